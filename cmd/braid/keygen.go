package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"braid/internal/pki"
)

type keygenOpts struct {
	dir   string
	hosts strList
	force bool
}

func keygenFlags(o *keygenOpts) *flag.FlagSet {
	fs := newFlagSet("keygen")
	fs.StringVar(&o.dir, "dir", "", "`DIR` to write cert.pem and key.pem into (required)")
	fs.Var(&o.hosts, "host", "a name or IP address `H` of the concentrator to put in the certificate (repeatable; optional, clients check the pin)")
	fs.BoolVar(&o.force, "force", false, "overwrite an existing key; clients pinned to it stop working")
	return fs
}

func runKeygen(args []string, stdout, stderr io.Writer) int {
	var o keygenOpts
	fs := keygenFlags(&o)
	err := parseFlags(fs, args)
	if err == nil && o.dir == "" {
		err = badf("--dir", "is required")
	}
	if err != nil {
		return fail(stdout, stderr, "keygen", fs, err)
	}
	pin, err := pki.Keygen(o.dir, o.hosts, o.force)
	if err != nil {
		msg := strings.TrimPrefix(err.Error(), "pki: ")
		msg = strings.Replace(msg, "(use force ", "(use --force ", 1)
		return fail(stdout, stderr, "keygen", fs, errors.New(msg))
	}
	// The pin is the only thing on stdout, so `PIN=$(braid keygen ...)` works.
	fmt.Fprintln(stdout, pin)
	return 0
}
