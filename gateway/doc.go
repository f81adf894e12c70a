// Package gateway is the address old tools are pointed at: the Titus v3
// job API served over two worlds at once, as REST (legacyapi.NewHandler)
// and as gRPC (grpcapi), both over the same Router. A new job goes where
// its application's migration stage sends it (the legacy master, or
// Kubernetes through gateway/kube); every later call on it goes by its
// id's prefix to the world it lives in; lists ask both worlds with the
// same cursor and merge their answers into one page. The event streams
// (ObserveJobs) read the observe hub, which follows both worlds' change
// feeds.
//
// Nothing is kept here but the hub's copy of the active set, which every
// start rebuilds from the worlds' snapshots: the worlds hold the jobs and
// ZooKeeper holds the stages, so a restarted gateway loses nothing, and a
// stream that reconnects gets a snapshot as complete as the worlds.
package gateway
