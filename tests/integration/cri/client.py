#!/usr/bin/python3
"""A minimal CRI image-service client: the calls the kubelet makes to pull an image.

  client.py --socket SOCK pull REF     prints the image ref containerd returns (its image id)
  client.py --socket SOCK --user U:P pull REF
                                       the same with AuthConfig{username, password} and an
                                       empty server_address, as the kubelet sends a pull secret
  client.py --socket SOCK status REF   prints id=..., repo_digests=..., repo_tags=...;
                                       exit 1 when the image is absent
  client.py --socket SOCK remove REF

Exit 0 on success, 1 when status finds no such image, 2 on usage, 3 when the
call fails (its gRPC status on stderr): an absent image and a dead socket differ.
The messages are compiled from api.proto (next to this file) with Debian's
protoc into a temporary directory at each run: protoc 3.21 matches
python3-protobuf 3.21, and protoc does not generate gRPC stubs, so the calls
are made with grpc's generic unary_unary on the method paths of runtime.v1.
Every call has a deadline (the kubelet's are minutes; a test wants an answer).
"""
import argparse
import importlib
import os
import subprocess
import sys
import tempfile

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
SERVICE = "/runtime.v1.ImageService/"
TIMEOUTS = {"pull": 60.0, "status": 10.0, "remove": 30.0}


def load_messages(tmp):
    subprocess.run(["protoc", "-I", HERE, "--python_out=" + tmp, os.path.join(HERE, "api.proto")],
                   check=True, timeout=30)
    sys.path.insert(0, tmp)
    return importlib.import_module("api_pb2")


def call(channel, method, request, response_type, timeout):
    stub = channel.unary_unary(SERVICE + method,
                               request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=response_type.FromString)
    return stub(request, timeout=timeout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--socket", required=True)
    ap.add_argument("--timeout", type=float, help="seconds (default: 60 for pull, 10 for status, 30 for remove)")
    ap.add_argument("--user", help="USER:PASSWORD for PullImage's AuthConfig")
    ap.add_argument("command", choices=sorted(TIMEOUTS))
    ap.add_argument("ref")
    args = ap.parse_args()
    timeout = args.timeout or TIMEOUTS[args.command]

    with tempfile.TemporaryDirectory(prefix="cri-client.") as tmp:
        pb = load_messages(tmp)
        spec = pb.ImageSpec(image=args.ref)
        with grpc.insecure_channel("unix://" + args.socket) as channel:
            try:
                if args.command == "pull":
                    req = pb.PullImageRequest(image=spec)
                    if args.user:
                        user, _, password = args.user.partition(":")
                        req.auth.CopyFrom(pb.AuthConfig(username=user, password=password))
                    r = call(channel, "PullImage", req, pb.PullImageResponse, timeout)
                    print(r.image_ref)
                elif args.command == "status":
                    r = call(channel, "ImageStatus", pb.ImageStatusRequest(image=spec), pb.ImageStatusResponse,
                             timeout)
                    # CRI: an absent image is a success with the image field unset.
                    if not r.HasField("image") or not r.image.id:
                        print("absent: %s" % args.ref, file=sys.stderr)
                        return 1
                    print("id=%s" % r.image.id)
                    print("repo_digests=%s" % ",".join(r.image.repo_digests))
                    print("repo_tags=%s" % ",".join(r.image.repo_tags))
                else:
                    call(channel, "RemoveImage", pb.RemoveImageRequest(image=spec), pb.RemoveImageResponse, timeout)
            except grpc.RpcError as e:
                print("%s %s: %s: %s" % (args.command, args.ref, e.code().name, e.details()), file=sys.stderr)
                return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
