// Renders an Ollama TEMPLATE as Ollama's server does for a chat, for
// tests/unit/export.ollama.test.ts, which compares it with the Jinja chat template's rendering.
// Standard library only; written from Ollama's behaviour (server/routes.go, server/prompt.go,
// template/template.go, parser/parser.go), not copied from it.
//
// stdin: JSON {"template"?: string, "modelfile"?: string, "system"?: string,
//              "messages": [{"role": string, "content": string}, ...]}
//   template   the TEMPLATE text; or
//   modelfile  a whole Modelfile: its TEMPLATE and SYSTEM are read as Ollama's Modelfile parser
//              reads them (a value ends at a line break where it is complete; characters other
//              than printable ones, space, tab, CR and LF are dropped)
//   system     the Modelfile's SYSTEM (instead of the modelfile's)
// stdout: the prompt text, exactly. With -commands: the Modelfile's commands as JSON
// [{"name", "args"}] instead (FROM is "model", PARAMETER x is "x").
//
// What Ollama does with a chat before the template (its ChatHandler and chatPrompt):
//   - the Modelfile's SYSTEM goes first when the conversation does not start with a system message;
//   - consecutive messages of one role (but tool) become one, their contents joined by "\n\n";
//   - .System is every system message's content joined by "\n\n", .Messages the merged list
//     (system messages included), .Response "", .Tools none, .Think false;
//   - the template is parsed with missingkey=zero and Ollama's functions (json, currentDate, ...).
// Templates that do not use .Messages are rendered by Ollama turn by turn through .Prompt and
// .Response; that is not done here (an error).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
	"unicode/utf8"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type input struct {
	Template  *string   `json:"template"`
	Modelfile *string   `json:"modelfile"`
	System    *string   `json:"system"`
	Messages  []message `json:"messages"`
}

// What a template sees of a message (the fields of Ollama's template message).
type templateMessage struct {
	Role       string
	Content    string
	Thinking   string
	Images     []string
	ToolCalls  []struct{}
	ToolName   string
	ToolCallID string
}

type command struct {
	Name string `json:"name"`
	Args string `json:"args"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "ollama-template:", err)
		os.Exit(1)
	}
}

func run() error {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	var in input
	if err := json.Unmarshal(raw, &in); err != nil {
		return fmt.Errorf("stdin: %w", err)
	}
	var tmpl, system string
	if in.Modelfile != nil {
		cmds, err := parseModelfile(*in.Modelfile)
		if err != nil {
			return fmt.Errorf("modelfile: %w", err)
		}
		if len(os.Args) > 1 && os.Args[1] == "-commands" {
			return json.NewEncoder(os.Stdout).Encode(cmds)
		}
		for _, c := range cmds {
			switch c.Name {
			case "template":
				tmpl = c.Args
			case "system":
				system = c.Args
			}
		}
	} else if in.Template != nil {
		tmpl = *in.Template
	} else {
		return errors.New(`stdin: needs "template" or "modelfile"`)
	}
	if in.System != nil {
		system = *in.System
	}
	out, err := render(tmpl, system, in.Messages)
	if err != nil {
		return err
	}
	_, err = os.Stdout.WriteString(out)
	return err
}

var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"currentDate":      func(...string) string { return time.Now().Format("2006-01-02") },
	"yesterdayDate":    func(...string) string { return time.Now().AddDate(0, 0, -1).Format("2006-01-02") },
	"toTypeScriptType": func(any) string { return "any" },
}

func render(src, system string, msgs []message) (string, error) {
	t, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(src)
	if err != nil {
		return "", fmt.Errorf("template does not parse: %w", err)
	}
	if !usesMessages(t) {
		return "", errors.New("the template does not use .Messages (Ollama renders such templates turn by turn; not done here)")
	}
	if len(msgs) > 0 && msgs[0].Role != "system" && system != "" {
		msgs = append([]message{{Role: "system", Content: system}}, msgs...)
	}
	var systems []string
	var merged []*templateMessage
	for _, m := range msgs {
		if m.Role == "system" {
			systems = append(systems, m.Content)
		}
		if n := len(merged); n > 0 && merged[n-1].Role == m.Role && m.Role != "tool" {
			merged[n-1].Content += "\n\n" + m.Content
			continue
		}
		merged = append(merged, &templateMessage{Role: m.Role, Content: m.Content})
	}
	var b strings.Builder
	err = t.Execute(&b, map[string]any{
		"System":     strings.Join(systems, "\n\n"),
		"Messages":   merged,
		"Tools":      nil,
		"Response":   "",
		"Think":      false,
		"ThinkLevel": "",
		"IsThinkSet": false,
	})
	if err != nil {
		return "", fmt.Errorf("template execution: %w", err)
	}
	return b.String(), nil
}

// usesMessages: whether a field or variable named messages (any case) appears in any of the
// template's trees, which is what makes Ollama pass .Messages.
func usesMessages(t *template.Template) bool {
	found := false
	var walk func(n parse.Node)
	walk = func(n parse.Node) {
		if n == nil || found {
			return
		}
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c)
			}
		case *parse.ActionNode:
			walk(n.Pipe)
		case *parse.TemplateNode:
			if n.Pipe != nil {
				walk(n.Pipe)
			}
		case *parse.IfNode:
			walkBranch(&n.BranchNode, walk)
		case *parse.RangeNode:
			walkBranch(&n.BranchNode, walk)
		case *parse.WithNode:
			walkBranch(&n.BranchNode, walk)
		case *parse.PipeNode:
			if n == nil {
				return
			}
			for _, c := range n.Cmds {
				for _, a := range c.Args {
					walk(a)
				}
			}
		case *parse.ChainNode:
			walk(n.Node)
			found = found || hasMessages(n.Field)
		case *parse.FieldNode:
			found = found || hasMessages(n.Ident)
		case *parse.VariableNode:
			found = found || hasMessages(n.Ident)
		}
	}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walk(tt.Tree.Root)
		}
	}
	return found
}

func walkBranch(b *parse.BranchNode, walk func(parse.Node)) {
	walk(b.Pipe)
	if b.List != nil {
		walk(b.List)
	}
	if b.ElseList != nil {
		walk(b.ElseList)
	}
}

func hasMessages(idents []string) bool {
	for _, s := range idents {
		if strings.EqualFold(s, "messages") {
			return true
		}
	}
	return false
}

// parseModelfile reads a Modelfile's commands the way Ollama's parser does: a command is a word
// of letters and a space or tab, then (PARAMETER) a parameter name and a space or tab, then the
// value up to a line break where the value, trimmed, is complete: not quoted, or "..." or
// """...""" (the quotes are removed). Spaces and tabs inside a value are kept, line breaks too
// while the value is incomplete, any other character strconv.IsPrint refuses is dropped. Lines
// starting with # are comments.
func parseModelfile(src string) ([]command, error) {
	var cmds []command
	const (
		idle = iota
		comment
		name
		param
		value
	)
	state := idle
	var word, pname, buf strings.Builder
	line := 1
	finish := func() (bool, error) {
		v, ok := unquote(strings.TrimSpace(buf.String()))
		if !ok {
			return false, nil
		}
		n := strings.ToLower(word.String())
		switch n {
		case "from":
			n = "model"
		case "parameter":
			n = pname.String()
		}
		cmds = append(cmds, command{Name: n, Args: v})
		word.Reset()
		pname.Reset()
		buf.Reset()
		return true, nil
	}
	for i, w := 0, 0; i < len(src); i += w {
		r, size := utf8.DecodeRuneInString(src[i:])
		w = size
		newline := r == '\n' || r == '\r'
		space := r == ' ' || r == '\t'
		switch state {
		case idle:
			switch {
			case r == '#':
				state = comment
			case space || newline:
			case isLetter(r):
				word.WriteRune(r)
				state = name
			default:
				return nil, fmt.Errorf("line %d: unexpected %q", line, r)
			}
		case comment:
			if newline {
				state = idle
			}
		case name:
			switch {
			case isLetter(r):
				word.WriteRune(r)
			case space:
				switch strings.ToLower(word.String()) {
				case "from", "template", "system", "adapter", "license", "parameter", "message", "draft", "renderer", "parser", "requires":
				default:
					return nil, fmt.Errorf("line %d: unknown command %q", line, word.String())
				}
				if strings.EqualFold(word.String(), "parameter") {
					state = param
				} else {
					state = value
				}
			default:
				return nil, fmt.Errorf("line %d: unexpected %q after %q", line, r, word.String())
			}
		case param:
			switch {
			case isLetter(r) || (r >= '0' && r <= '9') || r == '_':
				pname.WriteRune(r)
			case space:
				state = value
			default:
				return nil, fmt.Errorf("line %d: unexpected %q in a parameter name", line, r)
			}
		case value:
			if newline {
				done, err := finish()
				if err != nil {
					return nil, err
				}
				if done {
					state = idle
					break
				}
				buf.WriteRune(r)
			} else if space || strconv.IsPrint(r) {
				buf.WriteRune(r)
			}
		}
		if r == '\n' {
			line++
		}
	}
	switch state {
	case idle, comment:
	case value:
		if done, _ := finish(); !done {
			return nil, errors.New("unexpected end of file in a quoted value")
		}
	default:
		return nil, errors.New("unexpected end of file")
	}
	return cmds, nil
}

func isLetter(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }

func unquote(s string) (string, bool) {
	if strings.HasPrefix(s, `"""`) {
		if len(s) >= 6 && strings.HasSuffix(s, `"""`) {
			return s[3 : len(s)-3], true
		}
		return "", false
	}
	if strings.HasPrefix(s, `"`) {
		if len(s) >= 2 && strings.HasSuffix(s, `"`) {
			return s[1 : len(s)-1], true
		}
		return "", false
	}
	return s, true
}
