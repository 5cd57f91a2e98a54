// Package fielderr is the error of a setting that is wrong: the field it
// names and why. Configs (client, server), tiers, the policy file and the
// bench's scenario files all return it, so a caller that shows it to a
// user, such as cmd/braid mapping a field to its flag, finds it with one
// errors.As whichever check failed.
package fielderr

import "fmt"

// Error names the field that is wrong and why. Field is the name the
// checker gives it: a Config setting ("listen"), a Go path
// ("Classes[1].Ports[0]") or a file's key path
// ("tiers.basic.classes[0].name"). Reason reads after "FIELD: ".
type Error struct {
	Field, Reason string
}

// New returns the Error of field.
func New(field, reason string) *Error { return &Error{Field: field, Reason: reason} }

// Errorf returns the Error of field with a reason formatted as by
// fmt.Sprintf. It wraps nothing: %w is not for it.
func Errorf(field, format string, a ...any) *Error {
	return &Error{Field: field, Reason: fmt.Sprintf(format, a...)}
}

// Error returns "FIELD: REASON", or REASON alone when Field is empty.
func (e *Error) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return e.Field + ": " + e.Reason
}
