package doccheck

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/outpost-appliance/outpost/appliance"
	"github.com/outpost-appliance/outpost/firstboot"
	"github.com/outpost-appliance/outpost/firstboot/config"
)

// root is the repository's top directory, seen from this package.
const root = "../.."

// docs returns README.md and docs/*.md, relative to root.
func docs(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md"}
	m, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m {
		rel, _ := filepath.Rel(root, f)
		files = append(files, rel)
	}
	for _, want := range []string{"docs/architecture.md", "docs/appliance.md", "docs/api.md"} {
		found := false
		for _, f := range files {
			found = found || filepath.ToSlash(f) == want
		}
		if !found {
			t.Errorf("%s is missing", want)
		}
	}
	return files
}

func read(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fenced removes fenced code blocks, where brackets are not links.
func fenced(s string) string {
	var b strings.Builder
	in := false
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in = !in
			continue
		}
		if !in {
			b.WriteString(l)
		}
	}
	return b.String()
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestLinks checks that every relative link in the docs names a file or
// directory of the repository (and, for a fragment into a Markdown file, one
// of its headings), and that no doc points outside the repository: users who
// clone it have nothing else.
func TestLinks(t *testing.T) {
	for _, doc := range docs(t) {
		text := read(t, doc)
		for _, bad := range []string{"../shared", "DESIGN.md"} {
			if strings.Contains(text, bad) {
				t.Errorf("%s mentions %s, which is not in the repository", doc, bad)
			}
		}
		for _, m := range linkRE.FindAllStringSubmatch(fenced(text), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			file, frag, _ := strings.Cut(target, "#")
			path := doc
			if file != "" {
				path = filepath.Join(filepath.Dir(doc), file)
			}
			rel, err := filepath.Rel(root, filepath.Join(root, path))
			if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
				t.Errorf("%s: link %s leaves the repository", doc, target)
				continue
			}
			if _, err := os.Stat(filepath.Join(root, path)); err != nil {
				t.Errorf("%s: link %s: %s does not exist", doc, target, path)
				continue
			}
			if frag != "" && strings.HasSuffix(path, ".md") && !hasAnchor(read(t, path), frag) {
				t.Errorf("%s: link %s: %s has no heading for #%s", doc, target, path, frag)
			}
		}
	}
}

// hasAnchor reports whether a heading of the Markdown text md gets the
// anchor frag, as GitHub makes them: lower case, punctuation dropped, spaces
// turned into '-'.
func hasAnchor(md, frag string) bool {
	for _, l := range strings.Split(fenced(md), "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(l, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteRune('-')
			}
		}
		if b.String() == frag {
			return true
		}
	}
	return false
}

// TestArchitectureListsEveryPackage checks that docs/architecture.md names
// every package directory of the module, so a new package gets documented.
func TestArchitectureListsEveryPackage(t *testing.T) {
	arch := read(t, "docs/architecture.md")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		m, _ := filepath.Glob(filepath.Join(p, "*.go"))
		hasCode := false
		for _, f := range m {
			hasCode = hasCode || !strings.HasSuffix(f, "_test.go")
		}
		if !hasCode || p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		if !strings.Contains(arch, "`"+filepath.ToSlash(rel)+"`") {
			t.Errorf("docs/architecture.md does not name package `%s`", filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestApplianceDoc checks docs/appliance.md against the appliance contract
// and first boot: every property key, the config sources' paths, first
// boot's files and stages, and the hardware defaults.
func TestApplianceDoc(t *testing.T) {
	doc := read(t, "docs/appliance.md")
	want := func(what, s string) {
		if !strings.Contains(doc, s) {
			t.Errorf("docs/appliance.md does not mention %s %q", what, s)
		}
	}
	for _, p := range appliance.Properties() {
		want("property", "`"+p.Key+"`")
		want("property label", p.Label)
	}
	for _, s := range []string{config.DefaultsFile, config.FwCfgFile, config.KeyFile, config.SeedFile, config.OVFEnvFile} {
		want("config source", s)
	}
	for _, s := range config.DefaultCDROMs {
		want("CD-ROM device", s)
	}
	for _, s := range []string{firstboot.StateFile, firstboot.StatusFile, firstboot.IssueFile, firstboot.CertFile, firstboot.KeyFile} {
		want("first boot file", s)
	}
	for _, s := range []firstboot.StageName{firstboot.StageConfig, firstboot.StageNetwork, firstboot.StageDNS, firstboot.StageTime,
		firstboot.StagePreflight, firstboot.StageEnroll, firstboot.StageReport} {
		want("stage", "`"+string(s)+"`")
	}
	for _, s := range []string{firstboot.StateConfiguring, firstboot.StateWaitingKey, firstboot.StateFailed, firstboot.StateEnrolled} {
		want("status state", "`"+s+"`")
	}
	want("MAC range", appliance.MACRange)
	want("memory default", fmt.Sprintf("%d MiB", appliance.DefaultMemoryMiB))
	want("lab memory", fmt.Sprintf("%d MiB", appliance.LabMemoryMiB))
	want("disk default", fmt.Sprintf("%d GiB", appliance.DefaultDiskBytes>>30))
	want("virtual hardware default", "`"+appliance.DefaultVirtualHardware+"`")
	want("firmware", "`"+string(appliance.DefaultFirmware)+"`")
	want("firmware in OVF", "`"+appliance.DefaultFirmware.OVF()+"`")
}

// constants returns the string constants of a Go file whose names start
// with prefix, by name.
func constants(t *testing.T, rel, prefix string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, rel), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, prefix) || i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, _ := strconv.Unquote(lit.Value)
					out[n.Name] = v
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no %s* string constants", rel, prefix)
	}
	return out
}

// statusCodes maps net/http's constant names (StatusNotFound) to their
// values, derived from StatusText.
func statusCodes() map[string]int {
	out := map[string]int{}
	for c := 100; c < 600; c++ {
		txt := http.StatusText(c)
		if txt == "" {
			continue
		}
		name := "Status" + strings.Map(func(r rune) rune {
			if unicode.IsLetter(r) || unicode.IsDigit(r) {
				return r
			}
			return -1
		}, txt)
		out[name] = c
	}
	return out
}

// TestAPIDoc checks docs/api.md against package cpapi and the HTTP layer:
// every path, every refusal code, and for each code the status that
// controlplane/http.go answers with.
func TestAPIDoc(t *testing.T) {
	doc := read(t, "docs/api.md")
	for name, path := range constants(t, "cpapi/paths.go", "Path") {
		if !strings.Contains(doc, path) {
			t.Errorf("docs/api.md does not mention %s (cpapi.%s)", path, name)
		}
	}
	codes := constants(t, "cpapi/error.go", "Code")
	for name, code := range codes {
		if !strings.Contains(doc, "`"+code+"`") {
			t.Errorf("docs/api.md does not mention refusal code `%s` (cpapi.%s)", code, name)
		}
	}

	// The code → status table: the composite literal of var statuses.
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, "controlplane/http.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	statusByName := statusCodes()
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok || len(vs.Names) != 1 || vs.Names[0].Name != "statuses" || len(vs.Values) != 1 {
			return true
		}
		for _, e := range vs.Values[0].(*ast.CompositeLit).Elts {
			kv := e.(*ast.KeyValueExpr)
			code, ok := codes[kv.Key.(*ast.SelectorExpr).Sel.Name]
			if !ok {
				t.Errorf("controlplane/http.go: statuses key %s is not a cpapi code", kv.Key.(*ast.SelectorExpr).Sel.Name)
				continue
			}
			sname := kv.Value.(*ast.SelectorExpr).Sel.Name
			status, ok := statusByName[sname]
			if !ok {
				t.Errorf("controlplane/http.go: cannot tell the number of http.%s", sname)
				continue
			}
			n++
			row := fmt.Sprintf("| `%s` | %d", code, status)
			if !strings.Contains(doc, row) {
				t.Errorf("docs/api.md has no table row %q... (controlplane/http.go answers %s with %d)", row, code, status)
			}
		}
		return false
	})
	if n != len(codes) {
		t.Errorf("controlplane/http.go: statuses has %d entries, cpapi has %d codes", n, len(codes))
	}
}
