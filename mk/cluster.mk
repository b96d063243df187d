# Local Kubernetes control plane for tests (kwok; binaries built from Go modules into
# $(OVERSEER_CACHE), default ~/.cache/overseer). Included by the main Makefile.
.PHONY: cluster-tools cluster-up cluster-down forge-up forge-down

cluster-tools: ## Build kwok, kwokctl, etcd and the Kubernetes binaries (cached; instant once built)
	bash tools/cluster-tools.sh

cluster-up: ## Start the local kwok cluster on 127.0.0.1 (no-op if up) and print its kubeconfig path
	bash tools/cluster.sh up

cluster-down: ## Delete the local kwok cluster
	bash tools/cluster.sh down

forge-up: test-deps ## Start the local Gitea on 127.0.0.1:3789 for review-mode tests (built the first time, ~10 min)
	bash tools/forge.sh up

forge-down: ## Stop the local Gitea and delete its data
	bash tools/forge.sh down
