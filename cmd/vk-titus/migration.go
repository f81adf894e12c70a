package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/vk-titus/vk-titus/migration"
)

const defaultMigrationZK = "zk://127.0.0.1:22181/vk-titus/migration"

// migrationOpts are the flags every migration subcommand shares.
type migrationOpts struct {
	zk, output, def, logLevel string
	timeout                   time.Duration
}

func newMigrationCommand() *cobra.Command {
	o := &migrationOpts{}
	cmd := &cobra.Command{
		Use:   "migration",
		Short: "show and change which applications' new jobs go to Kubernetes (stages kept in ZooKeeper)",
		Long: "Stages: legacy, NN% (that share of new jobs goes to Kubernetes), kube. An application's\n" +
			"own stage wins over its capacity group's, which wins over the default. Rolling back is\n" +
			"`migration set APP legacy`; every change is kept in the history.",
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.zk, "zookeeper", envOr("MIGRATION_ZK", defaultMigrationZK), "ZooKeeper URL of the stages (env MIGRATION_ZK)")
	f.StringVarP(&o.output, "output", "o", "text", "output: text or json")
	f.StringVar(&o.def, "default", "legacy", "stage of applications without an entry (as the gateway is configured)")
	f.DurationVar(&o.timeout, "timeout", 15*time.Second, "give up on ZooKeeper after this long")
	f.StringVar(&o.logLevel, "log-level", "warn", "log level: debug, info, warn, error")
	cmd.AddCommand(o.getCommand(), o.setCommand(), o.unsetCommand(), o.listCommand(), o.historyCommand())
	return cmd
}

func (o *migrationOpts) getCommand() *cobra.Command {
	var cg, scope string
	cmd := &cobra.Command{
		Use:   "get NAME",
		Short: "the stage an application's new jobs get, and where it comes from (--scope: one entry as set)",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&cg, "capacity-group", "", "the application's capacity group")
	cmd.Flags().StringVar(&scope, "scope", "", "read this scope's own entry for NAME instead: application or capacityGroup")
	cmd.RunE = o.with(func(ctx context.Context, s *migration.Store, w io.Writer) error {
		if cmd.Flags().Changed("scope") {
			sc, err := migration.ParseScope(scope)
			if err != nil {
				return fmt.Errorf("--scope: %w", err)
			}
			e, ok := s.Get(sc, args0(cmd))
			if !ok {
				return fmt.Errorf("%s/%s: no stage set", scope, args0(cmd))
			}
			return o.print(w, e, entryRows([]migration.Entry{e}))
		}
		d := s.Resolve(args0(cmd), cg)
		from := "default"
		if d.Scope != "" {
			from = string(d.Scope) + "/" + d.Name
		}
		return o.print(w, d, [][]string{{"APPLICATION", "STAGE", "FROM"}, {args0(cmd), d.Stage.String(), from}})
	})
	return cmd
}

func (o *migrationOpts) setCommand() *cobra.Command {
	var scope, by string
	cmd := &cobra.Command{
		Use:   "set NAME STAGE",
		Short: "set the stage of an application (or --scope capacityGroup) to legacy, NN% or kube",
		Args:  cobra.ExactArgs(2),
	}
	scopeAndBy(cmd, &scope, &by)
	cmd.RunE = o.with(func(ctx context.Context, s *migration.Store, w io.Writer) error {
		stage, err := migration.ParseStage(cmd.Flags().Arg(1))
		if err != nil {
			return err
		}
		ch, err := s.Set(ctx, migration.Scope(scope), args0(cmd), stage, by)
		if err != nil {
			return err
		}
		if ch.Old == ch.New {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s/%s is already %s: nothing changed\n", scope, ch.Name, ch.New)
		}
		return o.print(w, ch, changeRows([]migration.Change{ch}))
	})
	return cmd
}

func (o *migrationOpts) unsetCommand() *cobra.Command {
	var scope, by string
	cmd := &cobra.Command{
		Use:   "unset NAME",
		Short: "remove an application's (or --scope capacityGroup) entry: it follows its capacity group or the default again",
		Args:  cobra.ExactArgs(1),
	}
	scopeAndBy(cmd, &scope, &by)
	cmd.RunE = o.with(func(ctx context.Context, s *migration.Store, w io.Writer) error {
		ch, err := s.Unset(ctx, migration.Scope(scope), args0(cmd), by)
		if err != nil {
			return err
		}
		return o.print(w, ch, changeRows([]migration.Change{ch}))
	})
	return cmd
}

func (o *migrationOpts) listCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "list", Short: "every stage set", Args: cobra.NoArgs}
	cmd.RunE = o.with(func(_ context.Context, s *migration.Store, w io.Writer) error {
		l := s.List()
		return o.print(w, l, entryRows(l))
	})
	return cmd
}

func (o *migrationOpts) historyCommand() *cobra.Command {
	var scope string
	var limit int
	cmd := &cobra.Command{
		Use:   "history [NAME]",
		Short: "recorded changes, newest first (of NAME only when given)",
		Args:  cobra.MaximumNArgs(1),
	}
	cmd.Flags().StringVar(&scope, "scope", "", "only this scope: application or capacityGroup")
	cmd.Flags().IntVar(&limit, "limit", migration.DefaultHistoryLimit, "at most this many changes")
	cmd.RunE = o.with(func(ctx context.Context, s *migration.Store, w io.Writer) error {
		h, err := s.History(ctx, migration.Scope(scope), args0(cmd), limit)
		if err != nil {
			return err
		}
		return o.print(w, h, changeRows(h))
	})
	return cmd
}

func scopeAndBy(cmd *cobra.Command, scope, by *string) {
	cmd.Flags().StringVar(scope, "scope", string(migration.ScopeApplication), "application or capacityGroup")
	cmd.Flags().StringVar(by, "by", envOr("USER", "unknown"), "who makes the change, for the history")
}

// args0 is the first argument, "" when there is none.
func args0(cmd *cobra.Command) string { return cmd.Flags().Arg(0) }

// with opens the Store for one subcommand and closes it afterwards.
func (o *migrationOpts) with(fn func(context.Context, *migration.Store, io.Writer) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, _ []string) error {
		if o.output != "text" && o.output != "json" {
			return fmt.Errorf("--output: %q is not one of text, json", o.output)
		}
		def, err := migration.ParseStage(o.def)
		if err != nil {
			return fmt.Errorf("--default: %w", err)
		}
		logger, err := newLogger(o.logLevel, "text")
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), o.timeout)
		defer cancel()
		s, err := migration.Open(ctx, o.zk, def, logger)
		if err != nil {
			return err
		}
		defer s.Close()
		return fn(ctx, s, cmd.OutOrStdout())
	}
}

// print writes v as JSON, or rows (a header, then one line per item) as
// aligned text.
func (o *migrationOpts) print(w io.Writer, v any, rows [][]string) error {
	if o.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func entryRows(es []migration.Entry) [][]string {
	rows := [][]string{{"SCOPE", "NAME", "STAGE", "UPDATED", "BY"}}
	for _, e := range es {
		rows = append(rows, []string{string(e.Scope), e.Name, e.Stage, stamp(e.Updated), e.By})
	}
	return rows
}

func changeRows(cs []migration.Change) [][]string {
	rows := [][]string{{"AT", "BY", "SCOPE", "NAME", "OLD", "NEW"}}
	for _, c := range cs {
		rows = append(rows, []string{stamp(c.At), c.By, string(c.Scope), c.Name, orDash(c.Old), orDash(c.New)})
	}
	return rows
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
