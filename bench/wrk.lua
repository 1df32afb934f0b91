-- SPDX-License-Identifier: Apache-2.0
-- wrk script of `make bench` (bench/run.sh): the request method from
-- BENCH_METHOD (GET or HEAD), containerd's manifest Accept header, and one
-- machine-readable line at the end:
--   RESULT requests=N rps=R p50_ms=X p99_ms=Y errors=N non2xx=N
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "
  .. "application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"
wrk.headers["User-Agent"] = "wrk-bench"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%d non2xx=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    e.connect + e.read + e.write + e.timeout, e.status))
end
