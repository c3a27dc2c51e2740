/*
 * secret_file.h - whether a file may hold a secret (a password file, a TLS private key): the
 * config loader and the TLS code both ask, neither through the other.
 */
#ifndef TASK_SECRET_FILE_H
#define TASK_SECRET_FILE_H

#include <stddef.h>

/* A secret file may be read by its owner and group only: 0, or -1 with the reason in why
 * ("readable by others"). */
int task__secret_file_check(const char *path, char *why, size_t size);

#endif
