"""The Open Inference Protocol V2 gRPC service: its .proto and the stubs the build generates."""
