package main

// The strict YAML decoding of the configuration file, and its problems as
// "file:line: key: why" lines. What each section's keys mean and accept
// is in the section's own file (config_*.go).

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a time.Duration that also accepts days ("36d") and weeks
// ("2w"), the units mail operators write lifetimes in.
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// UnmarshalYAML parses "90s", "5m", "48h", "7d", "1d12h", "2w".
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return errors.New("want a duration such as 30s, 5m, 48h or 7d")
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// maxDuration is the longest duration that fits time.Duration (int64
// nanoseconds), about 106751 days.
const maxDuration = time.Duration(math.MaxInt64)

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	if len(s) > 64 {
		return 0, fmt.Errorf("invalid duration %.64q...: too long", s)
	}
	outOfRange := fmt.Errorf("duration %q is out of range (at most %s)", s, formatDuration(maxDuration.Truncate(24*time.Hour)))
	var total time.Duration
	rest := s
	// Leading day/week components; the remainder goes to time.ParseDuration.
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i == len(rest) || (rest[i] != 'd' && rest[i] != 'w') {
			break
		}
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		if err != nil {
			return 0, outOfRange
		}
		unit := 24 * time.Hour
		if rest[i] == 'w' {
			unit *= 7
		}
		if n > int64(maxDuration/unit) {
			return 0, outOfRange
		}
		v := time.Duration(n) * unit
		if total > maxDuration-v {
			return 0, outOfRange
		}
		total += v
		rest = rest[i+1:]
	}
	if strings.HasPrefix(rest, "-") || strings.HasPrefix(s, "-") {
		return 0, fmt.Errorf("negative duration %q", s)
	}
	if rest != "" {
		v, err := time.ParseDuration(rest)
		if err != nil {
			if syntaxOK(rest) {
				// time.ParseDuration's only other failure: the value
				// does not fit in int64 nanoseconds.
				return 0, outOfRange
			}
			return 0, fmt.Errorf("invalid duration %q (use units s, m, h, d, w: 30s, 5m, 48h, 7d)", s)
		}
		if v < 0 {
			return 0, fmt.Errorf("negative duration %q", s)
		}
		if total > maxDuration-v {
			return 0, outOfRange
		}
		total += v
	}
	return total, nil
}

// syntaxOK reports whether s is a sequence of decimal numbers, each with a
// unit time.ParseDuration knows: then a parse error means overflow.
func syntaxOK(s string) bool {
	units := []string{"ns", "us", "µs", "μs", "ms", "s", "m", "h"}
	for s != "" {
		i := 0
		for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
			i++
		}
		if i == 0 {
			return false
		}
		s = s[i:]
		found := false
		for _, u := range units {
			if strings.HasPrefix(s, u) {
				s, found = s[len(u):], true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// formatDuration writes a duration the way the configuration does: 30d,
// 1h, 90s, 1d12h.
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	if days := d / (24 * time.Hour); days > 0 {
		fmt.Fprintf(&b, "%dd", days)
		d -= days * 24 * time.Hour
	}
	for _, u := range []struct {
		unit time.Duration
		name string
	}{{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}} {
		if n := d / u.unit; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.unit
		}
	}
	if d > 0 {
		b.WriteString(d.String())
	}
	return b.String()
}

// ConfigError is one problem in a config file, located by key and line.
type ConfigError struct {
	File string
	Line int
	Key  string
	Why  string
}

func (e ConfigError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	if e.Key == "" {
		return fmt.Sprintf("%s: %s", loc, e.Why)
	}
	return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Why)
}

// ConfigErrors is every problem found in a config file.
type ConfigErrors []ConfigError

func (es ConfigErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// add appends the problem of key; File and Line are filled by ParseConfig.
func (es *ConfigErrors) add(key, format string, args ...any) {
	*es = append(*es, ConfigError{Key: key, Why: fmt.Sprintf(format, args...)})
}

// failedKeys names the keys that did not decode: they hold their
// defaults, so checks that compare them with other keys would report
// problems the operator did not write.
type failedKeys map[string]bool

// decoded reports whether every one of keys decoded.
func (f failedKeys) decoded(keys ...string) bool {
	for _, k := range keys {
		if f[k] {
			return false
		}
	}
	return true
}

// decoder walks the YAML tree alongside the Config struct so that every
// problem is reported with its full key path (limits.max_recipients) and
// line, and every problem is reported, not just the first.
type decoder struct {
	file  string
	errs  ConfigErrors
	lines map[string]int // key path -> line of its value
}

// lineOf finds the line of a key path such as "mynetworks[1]" or
// "tls.cert", falling back to its parent keys.
func (d *decoder) lineOf(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

func (d *decoder) fail(n *yaml.Node, key, why string) {
	d.errs = append(d.errs, ConfigError{File: d.file, Line: n.Line, Key: key, Why: why})
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	isStruct := v.Kind() == reflect.Struct && !reflect.PointerTo(v.Type()).Implements(unmarshalerType)
	if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Struct && n.Kind == yaml.SequenceNode {
		// A list of mappings (dnsbl zones): each is decoded as strictly
		// as a section, its problems named key[i].field.
		out := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, out.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(out)
		return
	}
	if !isStruct {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return // "key:" with no value keeps the default
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, path, cleanYAMLError(err))
		}
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of keys")
		return
	}
	fields := map[string][]int{}
	var known []string
	yamlFields(v.Type(), nil, fields, &known)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		full := key
		if path != "" {
			full = path + "." + key
		}
		if seen[key] {
			d.fail(k, full, "key given twice")
			continue
		}
		seen[key] = true
		d.lines[full] = val.Line
		if val.Kind == yaml.SequenceNode {
			for j, item := range val.Content {
				d.lines[fmt.Sprintf("%s[%d]", full, j)] = item.Line
			}
		}
		idx, ok := fields[key]
		if !ok {
			sort.Strings(known)
			d.fail(k, full, "unknown key (known keys here: "+strings.Join(known, ", ")+")")
			continue
		}
		d.decode(val, v.FieldByIndex(idx), full)
	}
}

// yamlFields maps the YAML keys of struct type t to their field index
// paths; the fields of a struct tagged `yaml:",inline"` are keys of the
// same mapping (the top-level keys of MailSection).
func yamlFields(t reflect.Type, index []int, fields map[string][]int, known *[]string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		idx := append(append([]int(nil), index...), i)
		switch tag {
		case "", "-":
		case ",inline":
			yamlFields(f.Type, idx, fields, known)
		default:
			fields[tag] = idx
			*known = append(*known, tag)
		}
	}
}

// cleanYAMLError strips yaml.v3's Go type names, which mean nothing to an
// operator, keeping the value that did not fit.
func cleanYAMLError(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg := te.Errors[0]
		if i := strings.Index(msg, ": "); i >= 0 && strings.HasPrefix(msg, "line ") {
			msg = msg[i+2:]
		}
		msg = strings.Replace(msg, "cannot unmarshal !!str", "cannot use the string", 1)
		msg = strings.Replace(msg, "cannot unmarshal !!seq", "cannot use a list", 1)
		msg = strings.Replace(msg, "cannot unmarshal !!map", "cannot use a mapping", 1)
		msg = strings.Replace(msg, "cannot unmarshal !!int", "cannot use the number", 1)
		for _, t := range []string{"into int64", "into int", "into string", "into []string", "into map[string]string", "into float64", "into bool"} {
			if strings.HasSuffix(msg, t) {
				msg = strings.TrimSuffix(msg, t) + "here: want " + strings.NewReplacer("into int64", "a whole number", "into int", "a whole number", "into string", "a string", "into []string", "a list of strings", "into map[string]string", "a mapping of strings", "into float64", "a number", "into bool", "true or false").Replace(t)
			}
		}
		return msg
	}
	return err.Error()
}
