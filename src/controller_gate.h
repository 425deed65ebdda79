/* controller_gate.h - a gate several controllers share, for leader election.
 *
 * Provides: controller_gate. While it is closed the controllers behind it
 * run their informers and fill their caches, but start no reconcile;
 * opening it tells every member (its on_open callback), so keys queued
 * meanwhile are dispatched. Closing lets reconciles in flight finish.
 * Members join when built and leave when freed; free the gate after them.
 * Uses: nothing.
 */
#ifndef KLUA_CONTROLLER_GATE_H
#define KLUA_CONTROLLER_GATE_H

typedef struct controller_gate controller_gate;

controller_gate *controller_gate_new(int open);   /* caller frees; NULL = out of memory */
void controller_gate_set(controller_gate *g, int open);
int controller_gate_is_open(const controller_gate *g);
void controller_gate_free(controller_gate *g);

/* Join: on_open(ud) is called each time the gate opens. -1 without memory. */
int controller_gate_join(controller_gate *g, void (*on_open)(void *ud), void *ud);
/* Leave (ud as joined); a no-op if ud is not a member. */
void controller_gate_leave(controller_gate *g, void *ud);

#endif
