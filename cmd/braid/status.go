package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"braid/internal/status"
)

// runStatus fetches a running client's status page and prints it.
func runStatus(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("status")
	addr := fs.String("client", "127.0.0.1:1081", "the client's status `HOST:PORT` (its --status)")
	asJSON := fs.Bool("json", false, "print the JSON document as served")
	if err := parseFlags(fs, args); err != nil {
		return fail(stdout, stderr, "status", fs, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+*addr+"/status", nil)
	if err != nil {
		return fail(stdout, stderr, "status", fs, badf("--client", "%v", err))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fail(stdout, stderr, "status", fs, fmt.Errorf("no braid client answers at %s: %w", *addr, err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fail(stdout, stderr, "status", fs, fmt.Errorf("status page at %s: %s %v", *addr, resp.Status, err))
	}
	if *asJSON {
		stdout.Write(body)
		return 0
	}
	var doc status.Client
	if err := json.Unmarshal(body, &doc); err != nil {
		return fail(stdout, stderr, "status", fs, fmt.Errorf("status page at %s: %w", *addr, err))
	}
	status.WriteTable(stdout, doc.Paths, doc.Flows)
	return 0
}
