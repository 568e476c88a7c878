// Command writefixture writes the test fixture of package legacytest,
// WIND_main.db and WIND_chat.db, into the directory it is given, to try
// `rewind import-legacy` on:
//
//	go run ./legacy/legacytest/writefixture /tmp/legacy
package main

import (
	"fmt"
	"os"

	"github.com/rewind-chat/rewind/legacy/legacytest"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: writefixture DIR")
		os.Exit(2)
	}
	if err := os.MkdirAll(os.Args[1], 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "writefixture:", err)
		os.Exit(1)
	}
	mainPath, chatPath, err := legacytest.Default().Write(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "writefixture:", err)
		os.Exit(1)
	}
	fmt.Println(mainPath)
	fmt.Println(chatPath)
}
