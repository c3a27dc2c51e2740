/*
 * revoked.h - the set of revoked task ids, persisted in the taskd.revoked stream.
 */
#ifndef TASKD_REVOKED_H
#define TASKD_REVOKED_H

#include "worker.h"

#define CH_REVOKED 5
/* Read taskd.revoked back into the set (on connect, before consuming). 0 or an error code. */
int revoked_load(struct worker *w);
/* Add `id` to the set and append it to taskd.revoked, so the revoke survives restarts. */
void revoked_persist(struct worker *w, const char *id);
void revoked_add(struct worker *w, const char *id);
bool revoked_has(struct worker *w, const char *id);
json_object *revoked_list(struct worker *w);

#endif
