#!/bin/sh
# A valid ExecCredential of about 900 KB (a padding field), just under
# klua's 1 MiB cap: more than one pipe's worth, so the plugin exits while
# the last of it is still in the pipe.
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"padding":"'
head -c 900000 /dev/zero | tr '\0' a
printf '","token":"big-token"}}\n'
