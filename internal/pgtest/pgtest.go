// Package pgtest starts throwaway PostgreSQL servers for tests, from
// Debian's binaries (/usr/lib/postgresql/*/bin) or $BRAID_PG_BIN, on a
// unix socket in a directory of their own. Where there are none, Start
// skips the test and says why. For tests only.
package pgtest

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
)

// Server is a running cluster; Stop and Start take it down and up again
// (the data stays).
type Server struct {
	t    testing.TB
	bin  string
	dir  string // data directory's parent, and the socket's directory
	cmd  *exec.Cmd
	done chan struct{}
}

// bin finds initdb and postgres; "" when there are none.
func bin() string {
	if d := os.Getenv("BRAID_PG_BIN"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	major := func(d string) int { n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d))); return n }
	sort.Slice(dirs, func(i, j int) bool { return major(dirs[i]) > major(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d
		}
	}
	return ""
}

// Start initialises and starts a cluster, stopped and removed in
// t.Cleanup. PostgreSQL refuses to run as root: as root it runs as the
// postgres user (else nobody).
func Start(t testing.TB) *Server {
	t.Helper()
	b := bin()
	if b == "" {
		t.Skip("no PostgreSQL server binaries (initdb, postgres) under /usr/lib/postgresql/*/bin or $BRAID_PG_BIN: install Debian's postgresql package to run the PostgreSQL tests")
	}
	dir, err := os.MkdirTemp("", "braid-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{t: t, bin: b, dir: dir}
	if err := s.asUser(); err != nil {
		t.Skip(err.Error())
	}
	out, err := s.command("initdb", "-D", s.data(), "-U", "braid", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions").CombinedOutput()
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// DSN is the cluster's URL.
func (s *Server) DSN() string { return "postgres://braid@/postgres?host=" + s.dir }

// Start runs postgres and waits until it takes connections.
func (s *Server) Start() {
	s.t.Helper()
	s.cmd = s.command("postgres", "-D", s.data(), "-k", s.dir, "-c", "listen_addresses=", "-c", "fsync=off",
		"-c", "max_connections=40")
	logf, err := os.Create(filepath.Join(s.dir, "log-"+strconv.FormatInt(time.Now().UnixNano(), 10)))
	if err != nil {
		s.t.Fatal(err)
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("postgres: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(s.cmd, s.done)
	db, err := sql.Open("pgx", s.DSN())
	if err != nil {
		s.t.Fatal(err)
	}
	defer db.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(logf.Name())
			s.t.Fatalf("postgres exited: %s", b)
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("postgres not up after 30 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down (fast shutdown: open connections end).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.interrupt()
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}
