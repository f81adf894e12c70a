// Package gateway is the address old tools are pointed at: the Titus v3
// job API served over two worlds at once. A new job goes where its
// application's migration stage sends it (the legacy master, or Kubernetes
// through gateway/kube); every later call on it goes by its id's prefix to
// the world it lives in; lists ask both worlds with the same cursor and
// merge their answers into one page. Nothing is kept here: the worlds hold
// the jobs and ZooKeeper holds the stages, so a restarted gateway loses
// nothing.
package gateway
