/* secret_file.c - see secret_file.h. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "secret_file.h"

int task__secret_file_check(const char *path, char *why, size_t size)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(why, size, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(why, size, "%s: not a regular file", path);
        return -1;
    }
    /* A password others can read is no secret; one others can write lets them pick ours. */
    if (st.st_mode & (S_IRWXO | S_IWGRP)) {
        snprintf(why, size, "%s: refused: %s (chmod 600 or 640)", path,
                 (st.st_mode & (S_IWOTH | S_IWGRP)) ? "writable by group or others"
                                                    : "readable by others");
        return -1;
    }
    if (access(path, R_OK) != 0) {
        snprintf(why, size, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}
