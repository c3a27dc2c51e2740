/*
 * golden.h - load a message captured from real Celery 5.2.6 (tests/fixtures/celery-golden/) as
 * the AMQP properties, header table (with the exact AMQP kinds the capture recorded) and body
 * bytes that rabbitmq-c would hand us. Header-only: static functions for the unit tests.
 */
#ifndef TEST_GOLDEN_H
#define TEST_GOLDEN_H

#include <amqp.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <json-c/json.h>

#define GOLDEN_MAX_HDR 64

struct golden {
    json_object *root;                      /* owns every string the props point into */
    amqp_basic_properties_t props;
    amqp_table_entry_t hdr[GOLDEN_MAX_HDR];
    amqp_field_value_t arr[GOLDEN_MAX_HDR][4];
    unsigned char *body;                    /* owned */
    size_t body_len;
};

/* The captures in the source tree: under $TASKD_SOURCE_ROOT (meson sets it for the tests), else
 * beside this header as the compiler saw it (a path relative to the build dir). */
static const char *golden_dir(void)
{
    static char dir[1024];
    const char *root = getenv("TASKD_SOURCE_ROOT");
    if (root != NULL && root[0] != '\0') {
        snprintf(dir, sizeof(dir), "%s/tests/fixtures/celery-golden", root);
    } else {
        const char *slash = strrchr(__FILE__, '/');
        snprintf(dir, sizeof(dir), "%.*s../fixtures/celery-golden",
                 slash != NULL ? (int)(slash - __FILE__ + 1) : 0, __FILE__);
    }
    return dir;
}

static json_object *golden_get(json_object *o, const char *key)
{
    json_object *v = NULL;
    return json_object_object_get_ex(o, key, &v) ? v : NULL;
}

static amqp_field_value_t golden_value(json_object *val, json_object *type,
                                       amqp_field_value_t *arr)
{
    amqp_field_value_t v;
    memset(&v, 0, sizeof(v));
    if (json_object_is_type(type, json_type_object)) {
        json_object *types = golden_get(type, "A");
        size_t n = json_object_array_length(types);
        v.kind = AMQP_FIELD_KIND_ARRAY;
        v.value.array.num_entries = (int)n;
        v.value.array.entries = arr;
        for (size_t i = 0; i < n && i < 4; i++)
            arr[i] = golden_value(json_object_array_get_idx(val, i),
                                  json_object_array_get_idx(types, i), NULL);
        return v;
    }
    const char *t = json_object_get_string(type);
    switch (t[0]) {
    case 'S':
        v.kind = AMQP_FIELD_KIND_UTF8;
        v.value.bytes = amqp_cstring_bytes(json_object_get_string(val));
        break;
    case 'I':
        v.kind = AMQP_FIELD_KIND_I32;
        v.value.i32 = json_object_get_int(val);
        break;
    case 'l':
        v.kind = AMQP_FIELD_KIND_I64;
        v.value.i64 = json_object_get_int64(val);
        break;
    case 't':
        v.kind = AMQP_FIELD_KIND_BOOLEAN;
        v.value.boolean = json_object_get_boolean(val);
        break;
    case 'd':
        v.kind = AMQP_FIELD_KIND_F64;
        v.value.f64 = json_object_get_double(val);
        break;
    default:
        v.kind = AMQP_FIELD_KIND_VOID;
        break;
    }
    return v;
}

static int b64val(int c)
{
    const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(a, c);
    return c && p ? (int)(p - a) : -1;
}

static void golden_body(struct golden *g, json_object *raw)
{
    if (raw == NULL)
        return; /* a report file, not a message */
    if (json_object_is_type(raw, json_type_string)) {
        g->body_len = (size_t)json_object_get_string_len(raw);
        g->body = malloc(g->body_len + 1);
        memcpy(g->body, json_object_get_string(raw), g->body_len + 1);
        return;
    }
    const char *b64 = json_object_get_string(golden_get(raw, "$bytes_b64"));
    size_t n = b64 ? strlen(b64) : 0;
    g->body = malloc(n);
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64val(b64[i]);
        if (v < 0)
            continue;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            g->body[g->body_len++] = (unsigned char)(acc >> bits);
        }
    }
}

/* Load `name` (a file in celery-golden/). Returns 0 or -1. Free with golden_free(). */
static int golden_load(const char *name, struct golden *g)
{
    char path[2048];
    memset(g, 0, sizeof(*g));
    snprintf(path, sizeof(path), "%s/%s", golden_dir(), name);
    g->root = json_object_from_file(path);
    if (g->root == NULL)
        return -1;
    json_object *p = golden_get(g->root, "properties");
    amqp_basic_properties_t *pr = &g->props;
    json_object *v;
    if ((v = golden_get(p, "content_type")) != NULL) {
        pr->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
        pr->content_type = amqp_cstring_bytes(json_object_get_string(v));
    }
    if ((v = golden_get(p, "content_encoding")) != NULL) {
        pr->_flags |= AMQP_BASIC_CONTENT_ENCODING_FLAG;
        pr->content_encoding = amqp_cstring_bytes(json_object_get_string(v));
    }
    if ((v = golden_get(p, "delivery_mode")) != NULL) {
        pr->_flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
        pr->delivery_mode = (uint8_t)json_object_get_int(v);
    }
    if ((v = golden_get(p, "priority")) != NULL) {
        pr->_flags |= AMQP_BASIC_PRIORITY_FLAG;
        pr->priority = (uint8_t)json_object_get_int(v);
    }
    if ((v = golden_get(p, "correlation_id")) != NULL) {
        pr->_flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
        pr->correlation_id = amqp_cstring_bytes(json_object_get_string(v));
    }
    if ((v = golden_get(p, "reply_to")) != NULL) {
        pr->_flags |= AMQP_BASIC_REPLY_TO_FLAG;
        pr->reply_to = amqp_cstring_bytes(json_object_get_string(v));
    }
    if ((v = golden_get(p, "expiration")) != NULL) {
        pr->_flags |= AMQP_BASIC_EXPIRATION_FLAG;
        pr->expiration = amqp_cstring_bytes(json_object_get_string(v));
    }
    json_object *h = golden_get(g->root, "headers");
    json_object *types = golden_get(g->root, "header_amqp_types");
    if (h != NULL && golden_get(p, "headers") == NULL) {
        pr->_flags |= AMQP_BASIC_HEADERS_FLAG;
        int n = 0;
        json_object_object_foreach(h, key, val)
        {
            if (n >= GOLDEN_MAX_HDR)
                break;
            g->hdr[n].key = amqp_cstring_bytes(key);
            g->hdr[n].value = golden_value(val, golden_get(types, key), g->arr[n]);
            n++;
        }
        pr->headers.num_entries = n;
        pr->headers.entries = g->hdr;
    }
    golden_body(g, golden_get(g->root, "body_raw"));
    return 0;
}

static void golden_free(struct golden *g)
{
    json_object_put(g->root);
    free(g->body);
    memset(g, 0, sizeof(*g));
}

/* Names of the golden files starting with `prefix`, sorted; NULL-terminated, caller frees. */
static char **golden_list(const char *prefix)
{
    DIR *d = opendir(golden_dir());
    char **v = calloc(256, sizeof(*v));
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && n < 255) {
        size_t len = strlen(e->d_name);
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0 && len > 5 &&
            strcmp(e->d_name + len - 5, ".json") == 0)
            v[n++] = strdup(e->d_name);
    }
    if (d != NULL)
        closedir(d);
    for (int i = 1; i < n; i++) /* insertion sort: a handful of names */
        for (int j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            char *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v;
}

static void golden_list_free(char **v)
{
    for (int i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

#endif
