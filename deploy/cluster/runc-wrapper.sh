#!/bin/sh
# runc for the local one-node cluster's containerd (BinaryName in containerd.toml).
#
# This machine's root lacks CAP_SYS_RESOURCE, so no process may lower its oom_score_adj below 0, and kubelet
# asks for -998 (pod sandboxes) and -997 (Guaranteed pods); runc then fails with "can't get final child's PID
# from pipe: EOF" ("failed to update /proc/self/oom_score_adj: Permission denied" in its debug log). On
# `create`, raise a negative process.oomScoreAdj in the bundle's config.json to 0; everything else goes to
# runc unchanged.
bundle=
create=
prev=
for arg in "$@"; do
	case $arg in create) create=1 ;; esac
	if [ "$prev" = "--bundle" ] || [ "$prev" = "-b" ]; then bundle=$arg; fi
	prev=$arg
done
if [ -n "$create" ] && [ -n "$bundle" ] && [ -f "$bundle/config.json" ]; then
	sed -i -E 's/"oomScoreAdj":[[:space:]]*-[0-9]+/"oomScoreAdj":0/' "$bundle/config.json"
fi
exec /usr/sbin/runc "$@"
