/* curl_api.c - see curl_api.h. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include "curl_api.h"

/* Filled once under pthread_once and read-only afterwards: with the registry, libtask's only
 * process-wide state. */
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct task__curl_api api;
static const struct task__curl_api *loaded;
static char error[256];

static void *sym(void *lib, const char *name)
{
    void *p = dlsym(lib, name);
    if (p == NULL && error[0] == '\0')
        snprintf(error, sizeof(error), "libcurl: no symbol %s", name);
    return p;
}

#define LOAD(field, name) (*(void **)&api.field = sym(lib, name))

static void load(void)
{
    /* The soname of every libcurl 7.x/8.x build (Debian: libcurl4 or libcurl3-gnutls). */
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
        snprintf(error, sizeof(error), "cannot load libcurl.so.4: %s", dlerror());
        return;
    }
    LOAD(easy_init, "curl_easy_init");
    LOAD(easy_cleanup, "curl_easy_cleanup");
    LOAD(easy_reset, "curl_easy_reset");
    LOAD(easy_setopt, "curl_easy_setopt");
    LOAD(easy_getinfo, "curl_easy_getinfo");
    LOAD(easy_perform, "curl_easy_perform");
    LOAD(multi_init, "curl_multi_init");
    LOAD(multi_cleanup, "curl_multi_cleanup");
    LOAD(multi_add_handle, "curl_multi_add_handle");
    LOAD(multi_remove_handle, "curl_multi_remove_handle");
    LOAD(multi_perform, "curl_multi_perform");
    LOAD(multi_poll, "curl_multi_poll");
    LOAD(multi_wakeup, "curl_multi_wakeup");
    LOAD(multi_info_read, "curl_multi_info_read");
    LOAD(slist_append, "curl_slist_append");
    LOAD(slist_free_all, "curl_slist_free_all");
    __typeof__(curl_global_init) *global_init = NULL;
    *(void **)&global_init = sym(lib, "curl_global_init");
    if (error[0] != '\0')
        return;
    /* Not thread-safe, and must precede every other curl call: hence here, under the once. */
    CURLcode rc = global_init(CURL_GLOBAL_DEFAULT);
    if (rc != CURLE_OK) {
        snprintf(error, sizeof(error), "curl_global_init failed (code %d)", (int)rc);
        return;
    }
    loaded = &api;
}

const struct task__curl_api *task__curl(void)
{
    pthread_once(&once, load);
    return loaded;
}

const char *task__curl_error(void)
{
    pthread_once(&once, load);
    return error;
}
