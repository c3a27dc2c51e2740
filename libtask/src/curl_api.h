/*
 * curl_api.h - libcurl, loaded on first use with dlopen() instead of linked.
 *
 * Why: linking libcurl pulls in some 30 libraries (TLS, Kerberos, LDAP, SSH, IDN) whose loading
 * and constructors cost every process about 6 MB of resident memory and milliseconds of start-up,
 * also the taskd supervisor, which never makes an HTTP call, and each pool child before its first
 * HTTP task. Loaded lazily, only the processes that make HTTP calls pay for it.
 */
#ifndef TASK_CURL_API_H
#define TASK_CURL_API_H

#include <curl/curl.h>

/* The functions http.c uses, with libcurl's own types. */
struct task__curl_api {
    __typeof__(curl_easy_init) *easy_init;
    __typeof__(curl_easy_cleanup) *easy_cleanup;
    __typeof__(curl_easy_reset) *easy_reset;
    __typeof__(curl_easy_setopt) *easy_setopt;
    __typeof__(curl_easy_getinfo) *easy_getinfo;
    __typeof__(curl_easy_perform) *easy_perform;
    __typeof__(curl_multi_init) *multi_init;
    __typeof__(curl_multi_cleanup) *multi_cleanup;
    __typeof__(curl_multi_add_handle) *multi_add_handle;
    __typeof__(curl_multi_remove_handle) *multi_remove_handle;
    __typeof__(curl_multi_perform) *multi_perform;
    __typeof__(curl_multi_poll) *multi_poll;
    __typeof__(curl_multi_wakeup) *multi_wakeup;
    __typeof__(curl_multi_info_read) *multi_info_read;
    __typeof__(curl_slist_append) *slist_append;
    __typeof__(curl_slist_free_all) *slist_free_all;
};

/*
 * task__curl - load libcurl (once per process, thread-safe) and run curl_global_init(). Returns
 * the function table, or NULL when libcurl cannot be loaded or initialised; the reason is then in
 * task__curl_error(). Never unloaded: other code in the process may use curl too.
 */
const struct task__curl_api *task__curl(void);
const char *task__curl_error(void);

#endif
