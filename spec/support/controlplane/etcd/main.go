// Command etcd builds the upstream etcd server from the Go module proxy for
// klua's tests and demo; it only forwards to the upstream entry point.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
