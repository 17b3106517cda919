// pause: the sandbox ("pause") container of the local one-node cluster (hack/cluster.sh). It holds a pod's
// namespaces and does nothing else: sleeps until SIGTERM or SIGINT, then exits 0. Built static with
// CGO_ENABLED=0 and imported into containerd's k8s.io namespace as the CRI plugin's sandbox_image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
