/* cmd_replay.h - `klua replay`: a recording through the scripts, no cluster.
 *
 * Provides: klua_replay_main (argv[0] is "replay"). Uses: the test host
 * of `klua test` (testkit, testkit_fake, testkit_host), klua.replay.
 */
#ifndef KLUA_CMD_REPLAY_H
#define KLUA_CMD_REPLAY_H

/* `klua replay FILE --scripts DIR` (argv[0] is "replay"): the same host
 * drives klua.replay, which feeds a `klua run --record` file's events to
 * DIR's controllers against the in-memory API (writes as dry runs, ctx:http
 * answered from the recording) and prints per key the writes and HTTP
 * calls as a diff against the recording. Returns 0 (no difference), 1
 * (differences) or 2 (bad usage or input). */
int klua_replay_main(int argc, char **argv);

#endif
