// Package titus is Titus's job management API as protoc generates it from
// proto/netflix/titus: package com.netflix.titus, service
// JobManagementService, with the message names and field numbers of
// Netflix/titus-api-definitions, so that Spinnaker's clouddriver and
// titus-cli talk to the gateway as they talk to Titus.
//
// Everything here but this file and the tests is generated and committed:
// edit the .proto files, then run `make proto`, which regenerates the Go
// code with the pinned plugins and rewrites proto.sum. TestGeneratedCodeIsFresh
// fails while proto.sum does not match the .proto files, so a change to
// them cannot land without the code generated from it.
package titus
