package main

// `epp-client floor-server <addr>`: an ext_proc server in Go (grpc-go, go-control-plane types) that
// decides nothing — a fixed destination, the body echoed — answering the phases as the EPP does in
// full duplex. bench:epp runs the same client against it: what one ext_proc stream costs on this
// machine with no Node in the path (the lower bound any EPP could reach here).

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"
)

type floorServer struct {
	extprocv3.UnimplementedExternalProcessorServer
}

const floorDestination = "127.0.0.1:9,127.0.0.2:9"

func (floorServer) Process(stream grpc.BidiStreamingServer[extprocv3.ProcessingRequest, extprocv3.ProcessingResponse]) error {
	var body []byte
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		switch v := req.Request.(type) {
		case *extprocv3.ProcessingRequest_RequestBody:
			body = append(body, v.RequestBody.GetBody()...)
			if !v.RequestBody.GetEndOfStream() {
				continue
			}
			dest := &extprocv3.ProcessingResponse{
				Response: &extprocv3.ProcessingResponse_RequestHeaders{RequestHeaders: &extprocv3.HeadersResponse{Response: &extprocv3.CommonResponse{
					HeaderMutation: &extprocv3.HeaderMutation{SetHeaders: []*corev3.HeaderValueOption{{
						Header:       &corev3.HeaderValue{Key: "x-gateway-destination-endpoint", RawValue: []byte(floorDestination)},
						AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
					}}},
					ClearRouteCache: true,
				}}},
				DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
					"envoy.lb": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
						"x-gateway-destination-endpoint": structpb.NewStringValue(floorDestination),
					}}),
				}},
			}
			if err := stream.Send(dest); err != nil {
				return err
			}
			if err := stream.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_RequestBody{RequestBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: body, EndOfStream: true}}},
			}}}}); err != nil {
				return err
			}
			body = nil
		case *extprocv3.ProcessingRequest_ResponseHeaders:
			if err := stream.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseHeaders{ResponseHeaders: &extprocv3.HeadersResponse{}}}); err != nil {
				return err
			}
		case *extprocv3.ProcessingRequest_ResponseBody:
			b := v.ResponseBody
			if err := stream.Send(&extprocv3.ProcessingResponse{Response: &extprocv3.ProcessingResponse_ResponseBody{ResponseBody: &extprocv3.BodyResponse{Response: &extprocv3.CommonResponse{
				BodyMutation: &extprocv3.BodyMutation{Mutation: &extprocv3.BodyMutation_StreamedResponse{StreamedResponse: &extprocv3.StreamedBodyResponse{Body: b.GetBody(), EndOfStream: b.GetEndOfStream()}}},
			}}}}); err != nil {
				return err
			}
		}
	}
}

// floorServe listens on addr and prints `READY <port>` (spawnScript's protocol) once it does.
func floorServe(addr string) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		fatal(err)
	}
	s := grpc.NewServer()
	extprocv3.RegisterExternalProcessorServer(s, floorServer{})
	fmt.Fprintf(os.Stdout, "READY %d\n", lis.Addr().(*net.TCPAddr).Port)
	if err := s.Serve(lis); err != nil {
		fatal(err)
	}
}
