/* event_bus.c: a fixed table of (type, handler) pairs. */
#include "core/event_bus.h"

void
event_bus_init(struct event_bus *bus)
{
    bus->n = 0;
}

int
event_bus_subscribe(struct event_bus *bus, int type, event_handler_fn fn, void *ctx)
{
    if (bus->n >= EVENT_BUS_MAX)
        return SP_ETOOLARGE;
    bus->subs[bus->n].type = type;
    bus->subs[bus->n].fn = fn;
    bus->subs[bus->n].ctx = ctx;
    bus->n++;
    return SP_OK;
}

int
event_bus_publish(const struct event_bus *bus, int type, const void *payload, struct sp_error *err)
{
    for (int i = 0; i < bus->n; i++) {
        if (bus->subs[i].type != type)
            continue;
        int rc = bus->subs[i].fn(bus->subs[i].ctx, payload, err);
        if (rc != SP_OK)
            return rc;
    }
    return SP_OK;
}
