# Local Kubernetes control plane for tests (kwok; binaries built from Go modules into
# $(OVERSEER_CACHE), default ~/.cache/overseer). Included by the main Makefile.
.PHONY: cluster-tools cluster-up cluster-down

cluster-tools: ## Build kwok, kwokctl, etcd and the Kubernetes binaries (cached; instant once built)
	bash tools/cluster-tools.sh

cluster-up: ## Start the local kwok cluster on 127.0.0.1 (no-op if up) and print its kubeconfig path
	bash tools/cluster.sh up

cluster-down: ## Delete the local kwok cluster
	bash tools/cluster.sh down
