package bench

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"

	"braid/internal/fielderr"
)

// decodeTable fills the struct *dst from a TOML table as BurntSushi/toml
// parses it into map[string]any, by the fields' `toml` tags. It does its
// own walk, instead of toml.Decode into the struct, so that an error can
// name the field with its array index (paths[1].rate_mbps) and an unknown
// key is an error where it stands. Supported field kinds: string, bool,
// int, int64, float64, pointers to those (nil when the key is absent),
// structs, pointers to structs, and slices of any of these.
func decodeTable(table map[string]any, dst any, at string) error {
	return decodeStruct(table, reflect.ValueOf(dst).Elem(), at)
}

// errAt is a scenario error at a field path (the file's keys, with array
// indexes: paths[1].rate_mbps).
func errAt(field, format string, a ...any) error {
	return fielderr.Errorf(field, format, a...)
}

func join(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

func decodeStruct(table map[string]any, v reflect.Value, at string) error {
	t := v.Type()
	fields := map[string]int{}
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("toml"); tag != "" && tag != "-" {
			fields[tag] = i
		}
	}
	// Unknown keys first, in sorted order, so the one error reported does
	// not depend on map iteration.
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if _, ok := fields[k]; !ok {
			return errAt(join(at, k), "unknown key (known: %s)", knownKeys(fields))
		}
	}
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("toml")
		raw, ok := table[tag]
		if tag == "" || tag == "-" || !ok {
			continue
		}
		if err := decodeValue(raw, v.Field(i), join(at, tag)); err != nil {
			return err
		}
	}
	return nil
}

func knownKeys(fields map[string]int) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

func decodeValue(raw any, v reflect.Value, at string) error {
	if v.Kind() == reflect.Pointer {
		nv := reflect.New(v.Type().Elem())
		if err := decodeValue(raw, nv.Elem(), at); err != nil {
			return err
		}
		v.Set(nv)
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		s, ok := raw.(string)
		if !ok {
			return errAt(at, "want a string, got %s", tomlType(raw))
		}
		v.SetString(s)
	case reflect.Bool:
		b, ok := raw.(bool)
		if !ok {
			return errAt(at, "want true or false, got %s", tomlType(raw))
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		switch n := raw.(type) {
		case int64:
			v.SetInt(n)
		case float64:
			if n != math.Trunc(n) || math.Abs(n) > 1<<53 {
				return errAt(at, "want a whole number, got %v", n)
			}
			v.SetInt(int64(n))
		default:
			return errAt(at, "want a whole number, got %s", tomlType(raw))
		}
	case reflect.Float64:
		switch n := raw.(type) {
		case int64:
			v.SetFloat(float64(n))
		case float64:
			if math.IsNaN(n) || math.IsInf(n, 0) {
				return errAt(at, "want a finite number, got %v", n)
			}
			v.SetFloat(n)
		default:
			return errAt(at, "want a number, got %s", tomlType(raw))
		}
	case reflect.Struct:
		m, ok := raw.(map[string]any)
		if !ok {
			return errAt(at, "want a table, got %s", tomlType(raw))
		}
		return decodeStruct(m, v, at)
	case reflect.Slice:
		var items []any
		switch a := raw.(type) {
		case []any:
			items = a
		case []map[string]any:
			for _, m := range a {
				items = append(items, m)
			}
		default:
			return errAt(at, "want an array, got %s", tomlType(raw))
		}
		s := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, it := range items {
			if err := decodeValue(it, s.Index(i), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
		v.Set(s)
	default:
		panic("bench: decodeValue: unsupported field kind " + v.Kind().String())
	}
	return nil
}

func tomlType(raw any) string {
	switch raw.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	default:
		return fmt.Sprintf("%T", raw)
	}
}
