//go:build linux

package accounting

import (
	"context"
	"database/sql"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// pgServer is a throwaway PostgreSQL cluster on a unix socket, started
// from Debian's binaries (or $BRAID_PG_BIN) by the test itself.
type pgServer struct {
	t    *testing.T
	bin  string
	dir  string // data directory's parent, also the socket's directory
	cred *syscall.Credential
	cmd  *exec.Cmd
	done chan struct{}
}

// pgBin finds initdb and postgres; "" when there are none.
func pgBin() string {
	if d := os.Getenv("BRAID_PG_BIN"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgMajor(dirs[i]) > pgMajor(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err == nil {
			return d
		}
	}
	return ""
}

func pgMajor(bin string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(bin)))
	return n
}

// startPG starts a cluster, stopped in t.Cleanup. PostgreSQL refuses to
// run as root: as root the test runs it as the postgres user (else
// nobody). It skips, saying why, where there are no binaries.
func startPG(t *testing.T) *pgServer {
	t.Helper()
	bin := pgBin()
	if bin == "" {
		t.Skip("no PostgreSQL server binaries (initdb, postgres) under /usr/lib/postgresql/*/bin or $BRAID_PG_BIN: install Debian's postgresql package to run the PostgreSQL tests")
	}
	dir, err := os.MkdirTemp("", "braid-pg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &pgServer{t: t, bin: bin, dir: dir}
	if os.Getuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			u, err = user.Lookup("nobody")
		}
		if err != nil {
			t.Skip("running as root with neither a postgres nor a nobody user to run PostgreSQL as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	out, err := s.command("initdb", "-D", s.data(), "-U", "braid", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions").CombinedOutput()
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *pgServer) data() string { return filepath.Join(s.dir, "data") }

func (s *pgServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	return cmd
}

// DSN is the cluster's URL.
func (s *pgServer) DSN() string { return "postgres://braid@/postgres?host=" + s.dir }

// start runs postgres and waits until it takes connections.
func (s *pgServer) start() {
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

// stop shuts the server down (fast shutdown: open connections are ended).
func (s *pgServer) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
}

// backends are the databases every test runs against.
func backends(t *testing.T) map[string]func(t *testing.T) (dsn string, srv *pgServer) {
	return map[string]func(t *testing.T) (string, *pgServer){
		"sqlite": func(t *testing.T) (string, *pgServer) {
			return filepath.Join(t.TempDir(), "acct.db"), nil
		},
		"postgres": func(t *testing.T) (string, *pgServer) {
			s := startPG(t)
			return s.DSN(), s
		},
	}
}
