#!/usr/bin/env bash
# The specification's k8s/setup-minikube.sh, installing Overseer with its Helm chart
# (charts/overseer: Overseer, its migrations hook Job, and the bundled PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."

NAMESPACE=${NAMESPACE:-a8s}
RELEASE=${RELEASE:-overseer}

for tool in minikube kubectl helm docker; do
  command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done

echo "Starting minikube cluster..."
minikube status >/dev/null 2>&1 || minikube start --cpus=4 --memory=8192 --disk-size=20g

echo "Enabling necessary addons..."
minikube addons enable ingress
minikube addons enable storage-provisioner
minikube addons enable metrics-server

echo "Creating namespace and storage class..."
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f -
# The chart's PostgreSQL asks for the specification's storage class, backed here by minikube's
# hostpath provisioner.
cat <<YAML | kubectl apply -f -
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: a8s-storage
provisioner: k8s.io/minikube-hostpath
reclaimPolicy: Delete
volumeBindingMode: Immediate
YAML

echo "Building Overseer image..."
eval "$(minikube docker-env)"
docker build -t overseer:latest .

echo "Installing Overseer (PostgreSQL, migrations, API) with helm..."
helm upgrade --install "$RELEASE" charts/overseer \
  --namespace "$NAMESPACE" --create-namespace \
  --set image.tag=latest --set image.pullPolicy=Never \
  --rollback-on-failure --wait --timeout 5m

echo "Loading Claude environment image..."
minikube image load a8s-claude:latest || echo "a8s-claude:latest not found locally; build it before deploying environments"

echo "Setup complete! Use 'kubectl get pods -n $NAMESPACE' to check status"
