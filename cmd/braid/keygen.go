package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"braid/internal/pki"
)

type keygenOpts struct {
	dir    string
	hosts  strList
	force  bool
	tokens int
}

func keygenFlags(o *keygenOpts) *flag.FlagSet {
	fs := newFlagSet("keygen")
	fs.StringVar(&o.dir, "dir", "", "`DIR` to write cert.pem and key.pem into (required)")
	fs.Var(&o.hosts, "host", "a name or IP address `H` of the concentrator to put in the certificate (repeatable; optional, clients check the pin)")
	fs.BoolVar(&o.force, "force", false, "overwrite an existing key; clients pinned to it stop working")
	fs.IntVar(&o.tokens, "tokens", 0, "also add `N` new user tokens to DIR/tokens (created mode 0600; for braid server --token-file, one per user for braid client --token-file)")
	return fs
}

func runKeygen(args []string, stdout, stderr io.Writer) int {
	var o keygenOpts
	fs := keygenFlags(&o)
	err := parseFlags(fs, args)
	if err == nil && o.dir == "" {
		err = badf("--dir", "is required")
	}
	if err == nil && (o.tokens < 0 || o.tokens > 10000) {
		err = badf("--tokens", "%d is outside 0..10000", o.tokens)
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
	if o.tokens > 0 {
		path := filepath.Join(o.dir, "tokens")
		if err := addTokens(path, o.tokens); err != nil {
			return fail(stdout, stderr, "keygen", fs, err)
		}
		fmt.Fprintf(stderr, "braid keygen: added %d token(s) to %s: run braid server --token-file %s, and give each user one line of it, for braid client --token-file FILE (or --token)\n",
			o.tokens, path, path)
	}
	// The pin is the only thing on stdout, so `PIN=$(braid keygen ...)` works.
	fmt.Fprintln(stdout, pin)
	return 0
}

// addTokens appends n new random tokens, one per line, to the token file
// at path, creating it readable by its owner only.
func addTokens(path string, n int) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	var b strings.Builder
	for range n {
		var raw [24]byte
		rand.Read(raw[:])
		b.WriteString(base64.RawURLEncoding.EncodeToString(raw[:]))
		b.WriteByte('\n')
	}
	if _, err := f.WriteString(b.String()); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
