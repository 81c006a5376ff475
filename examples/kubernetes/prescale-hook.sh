#!/bin/sh
# A prescale exec hook for Kubernetes: each workload tier is a Deployment named
# WORKLOAD-TIER (say web-spot, scheduled on a spot node pool, and web-standard), whose
# replicas prescale sets. Configure it as
#
#   [providers]
#   use = "exec"
#   [providers.exec]
#   command = ["/usr/local/bin/prescale-hook.sh"]
#   report_state = true
#
# PRESCALE_K8S_NAMESPACE picks the namespace (default: default); KUBECTL the binary.
# Deployments that do not exist are reported as holding nothing. Needs kubectl with
# rights to get and scale those Deployments, and to list HPAs.
set -eu
ns=${PRESCALE_K8S_NAMESPACE:-default}
kubectl=${KUBECTL:-kubectl}
cat > /dev/null # the same request as JSON; the PRESCALE_* variables carry all we need

case "$PRESCALE_TYPE" in
action)
  # A Deployment an HPA scales too is left to it, as the Kubernetes provider leaves it:
  # each would undo the other's changes.
  name="$PRESCALE_WORKLOAD-$PRESCALE_TIER"
  hpa=$("$kubectl" -n "$ns" get hpa -o \
    'jsonpath={range .items[*]}{.spec.scaleTargetRef.kind}/{.spec.scaleTargetRef.name}={.metadata.name}{"\n"}{end}' \
    2>/dev/null | sed -n "s|^Deployment/$name=||p" | head -n 1)
  if [ -n "$hpa" ]; then
    echo "deployment/$name is also scaled by HorizontalPodAutoscaler $hpa: two autoscalers undo each other's changes; delete the HPA, or let it follow prescale" >&2
    exit 1
  fi
  # Only if the replicas are still the count prescale read (PRESCALE_INSTANCES_BEFORE,
  # from the last state report): one changed since, by hand or by another autoscaler,
  # is not written over; kubectl refuses, and the next pass reads it again. Idempotent
  # by itself: setting the count twice gives the same count.
  exec "$kubectl" -n "$ns" scale "deployment/$name" \
    --current-replicas="$PRESCALE_INSTANCES_BEFORE" --replicas="$PRESCALE_INSTANCES_AFTER"
  ;;
state)
  # {"web": {"spot": {"ready": 2, "pending": 1}, ...}, ...}: pending is asked for but
  # not ready yet.
  printf '{'
  wsep=""
  for w in $PRESCALE_WORKLOADS; do
    printf '%s"%s": {' "$wsep" "$w"
    tsep=""
    for t in $PRESCALE_TIERS; do
      if out=$("$kubectl" -n "$ns" get "deployment/$w-$t" \
        -o 'jsonpath={.spec.replicas} {.status.readyReplicas}' 2>/dev/null); then
        set -- $out
        want=${1:-0}
        ready=${2:-0}
        # Pods still ready while a scale-down ends are not counted: the total is the
        # desired count, which the next action's --current-replicas is checked against.
        ready=$((ready < want ? ready : want))
        pending=$((want - ready))
        printf '%s"%s": {"ready": %d, "pending": %d}' "$tsep" "$t" "$ready" "$pending"
        tsep=", "
      fi
    done
    printf '}'
    wsep=", "
  done
  printf '}\n'
  ;;
*)
  echo "unknown request type ${PRESCALE_TYPE:-(none)}" >&2
  exit 2
  ;;
esac
