/* ended.c - see ended.h. */
#include <string.h>
#include "ended.h"
#include "internal.h"

static struct {
    char id[37];
    double at;
} slots[ENDED_SLOTS];

static unsigned slot_of(const char *id)
{
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h % ENDED_SLOTS;
}

void ended_note(const char *id)
{
    if (id == NULL || strlen(id) >= sizeof(slots[0].id))
        return; /* not a UUID: such ids are not remembered */
    unsigned s = slot_of(id);
    memcpy(slots[s].id, id, strlen(id) + 1);
    slots[s].at = task__now_mono();
}

bool ended_lately(const char *id)
{
    if (id == NULL || strlen(id) >= sizeof(slots[0].id))
        return false;
    unsigned s = slot_of(id);
    return slots[s].at > 0 && task__now_mono() - slots[s].at < ENDED_KEEP_S &&
           strcmp(slots[s].id, id) == 0;
}
