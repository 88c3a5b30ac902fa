package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/zlayer/overlayd/ipc"
)

func newCallCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "call REQUEST-JSON",
		Short: "Send one request to the daemon and print its response",
		Long: `call sends one request, given as the JSON of the request object with its "op"
(PROTOCOL.md), and prints the response object as JSON. It needs the daemon
(exit 3 when it does not answer); an err response exits 4.`,
		Example: `  overlayctl call '{"op":"status"}'
  overlayctl call '{"op":"setup_global_overlay","deployment":"prod","instance_id":"1","cluster_cidr":"10.200.0.0/16","wg_port":51820,"nat_enabled":false}'`,
		Args: exactArgs(1, `one argument, the request object, e.g. '{"op":"status"}'`),
		RunE: func(c *cobra.Command, args []string) error { return a.call(c.Context(), args[0]) },
	}
}

// call sends one request given as the JSON of the request object (with its
// "op") and prints the response object.
func (a *app) call(ctx context.Context, request string) error {
	frame := fmt.Sprintf(`{"frame":"request","id":1,"request":%s}`, request)
	f, err := ipc.DecodeFrame([]byte(frame))
	if err != nil {
		return usageErrorf("call: %v", err)
	}
	c, err := a.client(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	r, err := c.Call(ctx, f.Request)
	if err != nil {
		return err
	}
	b, err := ipc.EncodeResponse(1, r)
	if err != nil {
		return err
	}
	var env struct {
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return err
	}
	fmt.Fprintf(a.out, "%s\n", env.Response)
	return nil
}
