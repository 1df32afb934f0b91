/* SPDX-License-Identifier: Apache-2.0 */
/* bench/rssfloor: the resident set a program pays for linking Debian's libcurl
 * (and with it libcrypto, libssl, libnghttp2, libssh2, Kerberos, LDAP, ... 30
 * libraries) and calling curl_global_init(), as layerd does at start-up:
 * prints "VmHWM VmRSS RssAnon RssFile" in KiB, like bench/run.sh's hwm(). */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

int main(void) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return 1;
        FILE *f = fopen("/proc/self/status", "re");
        if (!f)
                return 1;
        char line[256];
        unsigned long hwm = 0, rss = 0, anon = 0, file = 0;
        while (fgets(line, sizeof(line), f)) {
                sscanf(line, "VmHWM: %lu", &hwm);
                sscanf(line, "VmRSS: %lu", &rss);
                sscanf(line, "RssAnon: %lu", &anon);
                sscanf(line, "RssFile: %lu", &file);
        }
        fclose(f);
        printf("%lu %lu %lu %lu\n", hwm, rss, anon, file);
        curl_global_cleanup();
        return 0;
}
