package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/vk-titus/vk-titus/api/titus"
)

// jobsOpts are the flags every jobs subcommand shares: where the gateway's
// gRPC API is, and how to print.
type jobsOpts struct {
	addr, caller string
	timeout      time.Duration
	json         bool
	// TLS to the job API: the CA that signed its certificate, and a client
	// certificate (both optional; no CA: plain text).
	caFile, certFile, keyFile string
}

// newJobsCommand is a titus-cli for operators and demos: the same gRPC
// calls Titus's own CLI makes, against the gateway.
func newJobsCommand() *cobra.Command {
	o := &jobsOpts{}
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "submit, find, observe, resize and kill jobs through the gateway's gRPC job API (as titus-cli does)",
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.addr, "grpc-addr", envOr("LEGACY_API_GRPC", "127.0.0.1:7104"), "host:port of the gateway's gRPC job API (env LEGACY_API_GRPC)")
	f.StringVar(&o.caller, "caller-id", "vk-titus-cli", "sent as X-Titus-CallerId")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline of each call (observe: of connecting)")
	f.BoolVar(&o.json, "json", false, "print proto3 JSON instead of tables")
	f.StringVar(&o.caFile, "ca-file", envOr("JOB_API_CA", ""), "CA of the job API's serving certificate (TLS); empty: plain text (env JOB_API_CA)")
	f.StringVar(&o.certFile, "cert-file", envOr("JOB_API_CERT", ""), "client certificate presented to the job API (env JOB_API_CERT)")
	f.StringVar(&o.keyFile, "key-file", envOr("JOB_API_KEY", ""), "its key (env JOB_API_KEY)")
	cmd.AddCommand(o.submitCommand(), o.findCommand(), o.tasksCommand(), o.observeCommand(), o.killCommand(), o.resizeCommand())
	return cmd
}

// call runs f with a client and a context carrying the deadline and the
// caller's identity.
func (o *jobsOpts) call(cmd *cobra.Command, deadline bool, f func(context.Context, titus.JobManagementServiceClient) error) error {
	creds, err := o.credentials()
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(o.addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return fmt.Errorf("--grpc-addr %s: %w", o.addr, err)
	}
	defer conn.Close()
	ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if deadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	ctx = metadata.AppendToOutgoingContext(ctx, "X-Titus-CallerId", o.caller, "X-Titus-CallReason", "vk-titus jobs "+cmd.Name())
	return f(ctx, titus.NewJobManagementServiceClient(conn))
}

// credentials are TLS with --ca-file (and the client certificate, if
// given), or plain text without it.
func (o *jobsOpts) credentials() (credentials.TransportCredentials, error) {
	if o.caFile == "" {
		return insecure.NewCredentials(), nil
	}
	ca, err := os.ReadFile(o.caFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("--ca-file %s: no certificate", o.caFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert-file/--key-file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return credentials.NewTLS(cfg), nil
}

func (o *jobsOpts) print(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func (o *jobsOpts) submitCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "submit FILE",
		Short: "create a job from a JobDescriptor in proto3 JSON (- reads stdin), as titus-cli's job file",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(args[0])
			}
			if err != nil {
				return err
			}
			var d titus.JobDescriptor
			if err := protojson.Unmarshal(data, &d); err != nil {
				return fmt.Errorf("%s is not a JobDescriptor: %w", args[0], err)
			}
			return o.call(cmd, true, func(ctx context.Context, c titus.JobManagementServiceClient) error {
				id, err := c.CreateJob(ctx, &d)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), id.GetId())
				return err
			})
		},
	}
}

// filterFlags are the Titus filtering criteria, as --filter key=value.
func filterFlags(cmd *cobra.Command) *[]string {
	var filters []string
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil,
		"a filtering criterion key=value, repeatable: jobIds, appName, attributes (k:v,k2), attributes.op, jobType, jobState, taskStates, ...")
	return &filters
}

func criteria(filters []string) (map[string]string, error) {
	out := map[string]string{}
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--filter %q: want key=value", f)
		}
		out[k] = v
	}
	return out, nil
}

func (o *jobsOpts) findCommand() *cobra.Command {
	var pageSize int32
	var fields []string
	var all bool
	cmd := &cobra.Command{Use: "find [JOB_ID]", Short: "one job, or the jobs matching --filter (--all pages through them by cursor)", Args: cobra.MaximumNArgs(1)}
	filters := filterFlags(cmd)
	cmd.Flags().Int32Var(&pageSize, "page-size", 100, "jobs per call")
	cmd.Flags().StringSliceVar(&fields, "fields", nil, "project the jobs on these fields (id always)")
	cmd.Flags().BoolVar(&all, "all", false, "follow the cursor to the last page")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := criteria(*filters)
		if err != nil {
			return err
		}
		return o.call(cmd, true, func(ctx context.Context, client titus.JobManagementServiceClient) error {
			w := cmd.OutOrStdout()
			if len(args) == 1 {
				j, err := client.FindJob(ctx, &titus.JobId{Id: args[0]})
				if err != nil {
					return err
				}
				return o.print(w, j)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			if !o.json {
				fmt.Fprintln(tw, "ID\tAPPLICATION\tTYPE\tSTATE\tSIZE")
			}
			q := &titus.JobQuery{Page: &titus.Page{PageSize: pageSize}, FilteringCriteria: c, Fields: fields}
			for {
				res, err := client.FindJobs(ctx, q)
				if err != nil {
					return err
				}
				for _, j := range res.GetItems() {
					if o.json {
						if err := o.print(w, j); err != nil {
							return err
						}
						continue
					}
					d := j.GetJobDescriptor()
					kind, size := "batch", fmt.Sprint(d.GetBatch().GetSize())
					if s := d.GetService(); s != nil {
						kind, size = "service", fmt.Sprintf("%d/%d/%d", s.GetCapacity().GetMin(), s.GetCapacity().GetDesired(), s.GetCapacity().GetMax())
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", j.GetId(), d.GetApplicationName(), kind, j.GetStatus().GetState(), size)
				}
				if !all || !res.GetPagination().GetHasMore() {
					return tw.Flush()
				}
				q.Page.Cursor = res.GetPagination().GetCursor()
			}
		})
	}
	return cmd
}

func (o *jobsOpts) tasksCommand() *cobra.Command {
	var pageSize int32
	cmd := &cobra.Command{Use: "tasks [JOB_ID]", Short: "the tasks of a job, or those matching --filter", Args: cobra.MaximumNArgs(1)}
	filters := filterFlags(cmd)
	cmd.Flags().Int32Var(&pageSize, "page-size", 100, "tasks per call")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := criteria(*filters)
		if err != nil {
			return err
		}
		if len(args) == 1 {
			c["jobIds"] = args[0]
		}
		return o.call(cmd, true, func(ctx context.Context, client titus.JobManagementServiceClient) error {
			res, err := client.FindTasks(ctx, &titus.TaskQuery{Page: &titus.Page{PageSize: pageSize}, FilteringCriteria: c})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if o.json {
				return o.print(w, res)
			}
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tJOB\tSTATE\tREASON\tAGENT")
			for _, t := range res.GetItems() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.GetId(), t.GetJobId(), t.GetStatus().GetState(), t.GetStatus().GetReasonCode(), t.GetTaskContext()["agent.host"])
			}
			return tw.Flush()
		})
	}
	return cmd
}

func (o *jobsOpts) observeCommand() *cobra.Command {
	var job string
	var jobFields, taskFields []string
	cmd := &cobra.Command{Use: "observe", Short: "follow ObserveJobs (or ObserveJob with --job): the snapshot, then each change", Args: cobra.NoArgs}
	filters := filterFlags(cmd)
	cmd.Flags().StringVar(&job, "job", "", "observe this job only, until it finishes")
	cmd.Flags().StringSliceVar(&jobFields, "job-fields", nil, "project job updates on these fields")
	cmd.Flags().StringSliceVar(&taskFields, "task-fields", nil, "project task updates on these fields")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		c, err := criteria(*filters)
		if err != nil {
			return err
		}
		return o.call(cmd, false, func(ctx context.Context, client titus.JobManagementServiceClient) error {
			var stream grpc.ServerStreamingClient[titus.JobChangeNotification]
			if job != "" {
				stream, err = client.ObserveJob(ctx, &titus.JobId{Id: job})
			} else {
				stream, err = client.ObserveJobs(ctx, &titus.ObserveJobsQuery{FilteringCriteria: c, JobFields: jobFields, TaskFields: taskFields})
			}
			if err != nil {
				return err
			}
			for {
				n, err := stream.Recv()
				switch {
				case errors.Is(err, io.EOF), ctx.Err() != nil:
					return nil
				case err != nil:
					return err
				}
				if o.json {
					b, _ := protojson.Marshal(n)
					fmt.Fprintln(cmd.OutOrStdout(), string(b))
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), notificationLine(n))
			}
		})
	}
	return cmd
}

// notificationLine is one change as an operator reads it.
func notificationLine(n *titus.JobChangeNotification) string {
	at := time.UnixMilli(int64(n.GetTimestamp())).Format("15:04:05.000")
	archived := map[bool]string{true: " (archived)"}
	switch {
	case n.GetJobUpdate() != nil:
		u := n.GetJobUpdate()
		j := u.GetJob()
		return fmt.Sprintf("%s job  %s %s %s%s", at, j.GetId(), j.GetJobDescriptor().GetApplicationName(), j.GetStatus().GetState(), archived[u.GetArchived()])
	case n.GetTaskUpdate() != nil:
		u := n.GetTaskUpdate()
		t := u.GetTask()
		return fmt.Sprintf("%s task %s of %s %s %s%s", at, t.GetId(), t.GetJobId(), t.GetStatus().GetState(), t.GetStatus().GetReasonCode(), archived[u.GetArchived()])
	case n.GetSnapshotEnd() != nil:
		return "-- snapshot end: changes follow"
	case n.GetKeepAliveResponse() != nil:
		return at + " keep-alive"
	}
	return n.String()
}

func (o *jobsOpts) killCommand() *cobra.Command {
	var shrink, preventMin bool
	cmd := &cobra.Command{Use: "kill JOB_ID | kill --task TASK_ID", Short: "kill a job, or one task (--shrink lowers its job's size)", Args: cobra.ExactArgs(1)}
	task := cmd.Flags().Bool("task", false, "the argument is a task id")
	cmd.Flags().BoolVar(&shrink, "shrink", false, "with --task: lower the service job's desired size by one")
	cmd.Flags().BoolVar(&preventMin, "prevent-min-size-update", false, "with --shrink: refuse rather than lower the job's minimum")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return o.call(cmd, true, func(ctx context.Context, c titus.JobManagementServiceClient) error {
			var err error
			if *task {
				_, err = c.KillTask(ctx, &titus.TaskKillRequest{TaskId: args[0], Shrink: shrink, PreventMinSizeUpdate: preventMin})
			} else {
				_, err = c.KillJob(ctx, &titus.JobId{Id: args[0]})
			}
			return err
		})
	}
	return cmd
}

func (o *jobsOpts) resizeCommand() *cobra.Command {
	var min, desired, max uint32
	cmd := &cobra.Command{Use: "resize JOB_ID", Short: "change a service job's capacity: only the sizes given change", Args: cobra.ExactArgs(1)}
	cmd.Flags().Uint32Var(&min, "min", 0, "new minimum")
	cmd.Flags().Uint32Var(&desired, "desired", 0, "new desired size")
	cmd.Flags().Uint32Var(&max, "max", 0, "new maximum")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c := &titus.JobCapacityWithOptionalAttributes{}
		for name, f := range map[string]struct {
			v    uint32
			into **wrapperspb.UInt32Value
		}{"min": {min, &c.Min}, "desired": {desired, &c.Desired}, "max": {max, &c.Max}} {
			if cmd.Flags().Changed(name) {
				*f.into = wrapperspb.UInt32(f.v)
			}
		}
		if c.Min == nil && c.Desired == nil && c.Max == nil {
			return errors.New("give at least one of --min, --desired, --max")
		}
		return o.call(cmd, true, func(ctx context.Context, client titus.JobManagementServiceClient) error {
			_, err := client.UpdateJobCapacityWithOptionalAttributes(ctx, &titus.JobCapacityUpdateWithOptionalAttributes{JobId: args[0], JobCapacityWithOptionalAttributes: c})
			return err
		})
	}
	return cmd
}
