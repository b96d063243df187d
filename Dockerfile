# The Overseer image: the `overseer` CLI and API server, with git and the pinned helm, kubectl
# and sops (which encrypts the charts of namespaces whose secrets travel with SOPS).
# Build: docker build -t overseer:latest .    (images cannot be built on the development machines;
# `make lint` checks this file with hadolint)

# The tools, built from their Go modules at the versions tools/versions.env pins: the same
# helm and kubectl the test suite runs against its local control plane.
FROM golang:1.26-bookworm AS tools
WORKDIR /src
COPY tools/versions.env tools/versions.env
COPY tools/k8s tools/k8s
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN . tools/versions.env \
 && GOBIN=/out go install -trimpath -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
      "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}" \
 && GOBIN=/out go install -trimpath -ldflags "-s -w" \
      "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}" \
 && GOBIN=/out GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w -X main.version=${KUBE_SCORE_VERSION}" \
      "github.com/zegl/kube-score/cmd/kube-score@${KUBE_SCORE_VERSION}" \
 && GOBIN=/out go install -trimpath -ldflags "-s -w" \
      "github.com/getsops/sops/v3/cmd/sops@${SOPS_VERSION}"
# kubectl from the same go.mod the suite's control plane is built from (tools/cluster-tools.sh).
WORKDIR /src/tools/k8s
RUN . ../versions.env \
 && go build -trimpath -o /out/kubectl \
      -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=${KUBERNETES_VERSION} -X k8s.io/client-go/pkg/version.gitVersion=${KUBERNETES_VERSION}" \
      k8s.io/kubernetes/cmd/kubectl

FROM python:3.11-slim-bookworm
# git 2.39 is Debian bookworm's; pinned to the suite's major.minor so an image rebuild cannot
# move it under the repository format.
RUN apt-get update \
 && apt-get install -y --no-install-recommends "git=1:2.39.*" \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 --user-group overseer
COPY --from=tools /out/helm /out/kubeconform /out/kube-score /out/sops /out/kubectl /usr/local/bin/
WORKDIR /app
COPY pyproject.toml README.md ./
COPY generator ./generator
COPY templates ./templates
COPY migrations ./migrations
RUN pip install --no-cache-dir --compile .
# Runs as uid 10001 with a read-only root filesystem: the chart mounts volumes on the home
# directory (helm's cache and config, the Fernet key's default place), the clone and /tmp.
USER 10001:10001
ENV HOME=/home/overseer \
    OVERSEER_HOME=/home/overseer/.overseer \
    OVERSEER_REPO=/home/overseer/gitops \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
ENTRYPOINT ["overseer"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
