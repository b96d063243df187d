# The Overseer image: the `overseer` CLI and API server, with git and the pinned helm.
# Build: docker build -t overseer:latest .    (images cannot be built on the development machines)

FROM golang:1.26-bookworm AS tools
COPY tools/versions.env /tmp/versions.env
RUN . /tmp/versions.env \
 && GOBIN=/out go install -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}" \
      "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}" \
 && GOBIN=/out go install -ldflags "-s -w" "github.com/yannh/kubeconform/cmd/kubeconform@${KUBECONFORM_VERSION}"

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends git \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 overseer
COPY --from=tools /out/helm /out/kubeconform /usr/local/bin/
WORKDIR /app
COPY pyproject.toml README.md ./
COPY generator ./generator
COPY templates ./templates
COPY migrations ./migrations
RUN pip install --no-cache-dir .
USER overseer
ENV OVERSEER_HOME=/home/overseer/.overseer \
    OVERSEER_REPO=/home/overseer/gitops
EXPOSE 8000
ENTRYPOINT ["overseer"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
