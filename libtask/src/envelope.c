/*
 * envelope.c - Celery's `auth` envelope: base64 and the \x00\x01-separated fields (see
 * envelope.h). The layout follows SecureSerializer._pack/_unpack in Celery 5.2; where Python is
 * lenient by accident (it never checks the separator after the signature, and keeps only the
 * first three fields after it) this parser refuses, since a message Python would read differently
 * cannot carry a valid signature anyway.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "envelope.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

#define SEP "\x00\x01"
#define SEP_LEN 2

char *task__b64_encode(const void *data, size_t len, size_t *out_len)
{
    const unsigned char *in = data;
    if (len > (SIZE_MAX - 8) / 4 * 3)
        return NULL;
    size_t n = (len + 2) / 3 * 4;
    char *out = malloc(n + 1), *p = out;
    if (out == NULL)
        return NULL;
    size_t i = 0;
    for (; i + 2 < len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        *p++ = b64_alphabet[v >> 18 & 63];
        *p++ = b64_alphabet[v >> 12 & 63];
        *p++ = b64_alphabet[v >> 6 & 63];
        *p++ = b64_alphabet[v & 63];
    }
    if (i < len) {
        unsigned v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);
        *p++ = b64_alphabet[v >> 18 & 63];
        *p++ = b64_alphabet[v >> 12 & 63];
        *p++ = i + 1 < len ? b64_alphabet[v >> 6 & 63] : '=';
        *p++ = '=';
    }
    *p = '\0';
    if (out_len != NULL)
        *out_len = n;
    return out;
}

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

unsigned char *task__b64_decode(const char *text, size_t len, size_t *out_len)
{
    unsigned char *out = malloc(len / 4 * 3 + 4);
    if (out == NULL)
        return NULL;
    size_t n = 0, pad = 0, quad = 0;
    unsigned acc = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
            if (pad > 2 || quad < 2)
                goto bad;
            acc <<= 6;
            quad++;
        } else {
            int v = b64_value(c);
            if (v < 0 || pad > 0) /* data after padding */
                goto bad;
            acc = acc << 6 | (unsigned)v;
            quad++;
        }
        if (quad == 4) {
            out[n++] = (unsigned char)(acc >> 16);
            if (pad < 2)
                out[n++] = (unsigned char)(acc >> 8);
            if (pad < 1)
                out[n++] = (unsigned char)acc;
            acc = 0;
            quad = 0;
            if (pad > 0)
                pad = 3; /* the padded quad ends the text: anything after it is refused */
        }
    }
    if (quad != 0)
        goto bad;
    out[n] = '\0';
    *out_len = n;
    return out;
bad:
    free(out);
    return NULL;
}

static const unsigned char *find_sep(const unsigned char *p, const unsigned char *end)
{
    for (; p + SEP_LEN <= end; p++)
        if (p[0] == 0 && p[1] == 1)
            return p;
    return NULL;
}

void task__envelope_free(struct task__envelope *e)
{
    free(e->raw);
    free(e->signer);
    memset(e, 0, sizeof(*e));
}

/* Frees all but the signer (for the caller's log line). */
static void drop(struct task__envelope *e)
{
    char *signer = e->signer;
    e->signer = NULL;
    task__envelope_free(e);
    e->signer = signer;
}

static int refuse(struct task__envelope *e, enum task__bad *why, enum task__bad reason,
                  task_error *err, const char *what)
{
    drop(e);
    *why = reason;
    return task__fail(err, TASK_EPROTO, "signed envelope: %s", what);
}

int task__envelope_parse(const void *b64, size_t len, task__siglen_fn siglen, void *ud,
                         struct task__envelope *out, enum task__bad *why, task_error *err)
{
    memset(out, 0, sizeof(*out));
    *why = TASK_BAD_NONE;
    out->raw = task__b64_decode(b64 ? b64 : "", len, &out->raw_len);
    if (out->raw == NULL)
        return refuse(out, why, TASK_BAD_ENVELOPE, err, "body is not base64");
    const unsigned char *p = out->raw, *end = out->raw + out->raw_len;
    const unsigned char *sep = find_sep(p, end);
    if (sep == NULL || sep == p)
        return refuse(out, why, TASK_BAD_ENVELOPE, err, "no signer field");
    if (memchr(p, 0, (size_t)(sep - p)) != NULL)
        return refuse(out, why, TASK_BAD_ENVELOPE, err, "signer holds a NUL byte");
    out->signer = strndup((const char *)p, (size_t)(sep - p));
    if (out->signer == NULL) {
        task__envelope_free(out);
        return task__fail(err, TASK_ENOMEM, "signed envelope");
    }
    size_t sig_len = siglen(out->signer, ud);
    if (sig_len == 0) {
        drop(out);
        *why = TASK_BAD_UNTRUSTED;
        return task__fail(err, TASK_EPROTO, "signer '%.200s' is not in the trusted "
                          "certificate store", out->signer);
    }
    p = sep + SEP_LEN;
    if ((size_t)(end - p) < sig_len + SEP_LEN)
        return refuse(out, why, TASK_BAD_ENVELOPE, err, "shorter than the signer's signature");
    out->sig = p;
    out->sig_len = sig_len;
    p += sig_len;
    if (p[0] != 0 || p[1] != 1)
        return refuse(out, why, TASK_BAD_ENVELOPE, err, "no separator after the signature");
    p += SEP_LEN;
    const unsigned char *f[3], *fe[3];
    for (int i = 0; i < 3; i++) {
        sep = find_sep(p, end);
        f[i] = p;
        fe[i] = i < 2 ? sep : end;
        if (i < 2 && sep == NULL)
            return refuse(out, why, TASK_BAD_ENVELOPE, err,
                          "expected content_type, content_encoding and body fields");
        p = i < 2 ? sep + SEP_LEN : end;
    }
    if (find_sep(f[2], end) != NULL)
        return refuse(out, why, TASK_BAD_ENVELOPE, err, "the body holds a field separator");
    out->content_type = (const char *)f[0];
    out->ct_len = (size_t)(fe[0] - f[0]);
    out->content_encoding = (const char *)f[1];
    out->ce_len = (size_t)(fe[1] - f[1]);
    out->body = (const char *)f[2];
    out->body_len = (size_t)(fe[2] - f[2]);
    return 0;
}

static bool holds_sep(const void *s, size_t n)
{
    return find_sep(s, (const unsigned char *)s + n) != NULL;
}

int task__envelope_build(const char *signer, const unsigned char *sig, size_t sig_len,
                         const char *content_type, const char *content_encoding,
                         const void *body, size_t body_len, char **out, size_t *out_len)
{
    size_t sl = strlen(signer), cl = strlen(content_type), el = strlen(content_encoding);
    if (holds_sep(signer, sl) || holds_sep(content_type, cl) || holds_sep(content_encoding, el) ||
        holds_sep(body, body_len))
        return TASK_EINVAL;
    size_t n = sl + sig_len + cl + el + body_len + 4 * SEP_LEN;
    unsigned char *raw = malloc(n), *p = raw;
    if (raw == NULL)
        return TASK_ENOMEM;
    const void *parts[] = {signer, sig, content_type, content_encoding, body};
    size_t lens[] = {sl, sig_len, cl, el, body_len};
    for (int i = 0; i < 5; i++) {
        if (i > 0) {
            memcpy(p, SEP, SEP_LEN);
            p += SEP_LEN;
        }
        memcpy(p, parts[i], lens[i]);
        p += lens[i];
    }
    *out = task__b64_encode(raw, n, out_len);
    free(raw);
    return *out != NULL ? 0 : TASK_ENOMEM;
}
