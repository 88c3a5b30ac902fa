package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// printer writes a command's output in the -o format: table (aligned
// columns with a "source:" line), json (one indented document: an object,
// or an array for a list) or jsonl (one compact JSON value a line).
type printer struct {
	format string
	w      io.Writer
	n      int // items written in a list
	inList bool
}

// printer is the output of this invocation.
func (a *app) printer() *printer { return &printer{format: a.output, w: a.out} }

// Table says whether the output is a table (the human format).
func (p *printer) Table() bool { return p.format == "table" }

// Object writes one JSON document (json indented, jsonl on one line).
func (p *printer) Object(v any) error {
	var b []byte
	var err error
	if p.format == "json" {
		b, err = json.MarshalIndent(v, "", "  ")
	} else {
		b, err = json.Marshal(v)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(p.w, "%s\n", b)
	return err
}

// Item writes one element of a list: with json the list is an array
// (closed by End), with jsonl each element is a line.
func (p *printer) Item(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if p.format == "jsonl" {
		_, err = fmt.Fprintf(p.w, "%s\n", b)
		p.n++
		return err
	}
	sep := ",\n  "
	if !p.inList {
		sep, p.inList = "[\n  ", true
	}
	p.n++
	_, err = fmt.Fprintf(p.w, "%s%s", sep, b)
	return err
}

// End closes a json list ("[]" when it was empty).
func (p *printer) End() error {
	if p.format != "json" {
		return nil
	}
	if !p.inList {
		_, err := fmt.Fprintln(p.w, "[]")
		return err
	}
	p.inList = false
	_, err := fmt.Fprint(p.w, "\n]\n")
	return err
}

// table is an aligned table with a header row.
type table struct {
	tw *tabwriter.Writer
}

// NewTable starts a table with these column headers.
func (p *printer) NewTable(headers ...string) *table {
	t := &table{tw: tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)}
	t.Row(headers...)
	return t
}

// Row adds a row; empty cells print as "-".
func (t *table) Row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// Flush writes the table out.
func (t *table) Flush() error { return t.tw.Flush() }
