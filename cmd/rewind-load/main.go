// Command rewind-load is REWIND's load-testing harness: it drives real
// protocol traffic at a REWIND server on this machine and measures it.
// `rewind-load -h` lists the scenarios and flags; package load has the
// design.
package main

import (
	"io"
	"os"

	"github.com/rewind-chat/rewind/load"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the command line: a worker when started by a parent run,
// otherwise the parent.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if load.IsWorker() {
		return load.WorkerMain(stdin, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "compare" {
		return load.Compare(args[1:], stdout, stderr)
	}
	return load.Main(args, stdout, stderr)
}
