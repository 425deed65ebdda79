/* run.h - the `klua run` and `klua check` commands.
 *
 * Provides: klua_run_main (load every top-level *.lua of --scripts DIR,
 * connect, start informers and controllers, reconcile until SIGINT/SIGTERM,
 * then drain in-flight reconciles for up to 10 s and exit 0) and
 * klua_check_main (load and validate scripts without a cluster). argv[0]
 * is the subcommand name. Both return the process exit code.
 * Uses: lua_host, controller, lua_ctx, informer, rest, kube, http,
 * kubeconfig, loop, log.
 */
#ifndef KLUA_RUN_H
#define KLUA_RUN_H

int klua_run_main(int argc, char **argv);
int klua_check_main(int argc, char **argv);

#endif
