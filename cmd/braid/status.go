package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"

	"braid/internal/status"
)

// clearHome moves the cursor home and clears the screen, so --watch
// redraws in place.
const clearHome = "\x1b[H\x1b[2J"

// runStatus fetches a running client's (or concentrator's) status page
// and prints it, once or, with --watch, every --interval until sig.
func runStatus(args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	fs := newFlagSet("status")
	addr := fs.String("client", "127.0.0.1:1081", "the client's status `HOST:PORT` (its --status)")
	server := fs.String("server", "", "read a concentrator's status page at `HOST:PORT` instead (its --status): every session")
	asJSON := fs.Bool("json", false, "print the JSON document as served")
	watch := fs.Bool("watch", false, "redraw every --interval, in place, until interrupted (Ctrl-C)")
	interval := fs.Duration("interval", time.Second, "how often --watch redraws (`D`, at least 100ms)")
	err := parseFlags(fs, args)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case err != nil:
	case set["client"] && set["server"]:
		err = badf("--server", "is for a concentrator, --client for a client: give one")
	case *interval < 100*time.Millisecond:
		err = badf("--interval", "%v is under 100ms", *interval)
	case set["interval"] && !*watch:
		err = badf("--interval", "is for --watch")
	}
	if err != nil {
		return fail(stdout, stderr, "status", fs, err)
	}
	target, field := *addr, "--client"
	if *server != "" {
		target, field = *server, "--server"
	}
	if _, err := http.NewRequest("GET", "http://"+target+"/status", nil); err != nil {
		return fail(stdout, stderr, "status", fs, badf(field, "%v", err))
	}
	render := func(w io.Writer) error {
		body, err := fetchStatus(target, field)
		if err != nil {
			return err
		}
		if *asJSON {
			_, err := w.Write(body)
			return err
		}
		if *server != "" {
			var doc status.Server
			if err := json.Unmarshal(body, &doc); err != nil || doc.Sessions == nil {
				return fmt.Errorf("status page at %s is not a concentrator's (%v): try --client", target, err)
			}
			status.WriteServer(w, &doc)
			return nil
		}
		var doc status.Client
		if err := json.Unmarshal(body, &doc); err != nil || doc.Session == "" {
			return fmt.Errorf("status page at %s is not a client's (%v): try --server", target, err)
		}
		status.WriteClient(w, &doc)
		return nil
	}
	if !*watch {
		if err := render(stdout); err != nil {
			return fail(stdout, stderr, "status", fs, err)
		}
		return 0
	}
	t := time.NewTicker(*interval)
	defer t.Stop()
	for {
		var b bytes.Buffer
		if !*asJSON {
			b.WriteString(clearHome)
			fmt.Fprintf(&b, "braid status %s %s, every %v (Ctrl-C to stop), %s\n\n", field, target, *interval,
				time.Now().Format(time.TimeOnly))
		}
		if err := render(&b); err != nil {
			// The page may come back (a client restarting): say so in
			// place and keep watching.
			fmt.Fprintf(&b, "%v\n", err)
		}
		stdout.Write(b.Bytes())
		select {
		case <-sig:
			return 0
		case <-t.C:
		}
	}
}

// fetchStatus returns the status page at addr; field names the flag
// that gave it, for errors.
func fetchStatus(addr, field string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/status", nil)
	if err != nil {
		return nil, badf(field, "%v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("no braid status page answers at %s (%s): %w", addr, field, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	if err != nil {
		return nil, fmt.Errorf("status page at %s: %w", addr, err)
	}
	return body, nil
}
