package fielderr

import (
	"errors"
	"fmt"
	"testing"
)

func TestError(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{New("listen", "is required"), "listen: is required"},
		{Errorf("path lte", "conns=%d is outside 1..16", 17), "path lte: conns=17 is outside 1..16"},
		{New("tiers.basic.classes[0].name", `"default" is reserved`), `tiers.basic.classes[0].name: "default" is reserved`},
		{New("", "want a table, got a string"), "want a table, got a string"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%#v: %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestAs: a caller finds the field through any wrapping.
func TestAs(t *testing.T) {
	err := fmt.Errorf("load policy: %w", New("tokens", "a token is empty"))
	var fe *Error
	if !errors.As(err, &fe) || fe.Field != "tokens" || fe.Reason != "a token is empty" {
		t.Fatalf("errors.As(%v) = %v, %+v", err, errors.As(err, &fe), fe)
	}
}
