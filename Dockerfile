# Switchboard node image: FROM scratch + the static binary.
#
# Nothing is pulled (no registry is reachable), so there is no build stage:
# `make image` builds bin/switchboard on the host (CGO_ENABLED=0, -trimpath)
# and then this file. See docs/deploy.md.
#
# scratch has no shell, no CA bundle, no /tmp and no /etc/passwd: the node
# needs none of them (its TLS trusts only the cluster CA; it writes only under
# data_dir). The directories it writes to come from deploy/image/rootfs, owned
# by the unprivileged user the node runs as, so that named volumes mounted
# there start out writable.
FROM scratch

ARG VERSION=dev
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Switchboard node: clustered self-hosted edge" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/switchboard-io/switchboard"

COPY --chown=65532:65532 deploy/image/rootfs/ /
COPY bin/switchboard /switchboard

# Container defaults: every listener on all interfaces, data in the /data
# volume. A cluster also needs the *_advertise addresses (an IP other nodes
# reach), join, bootstrap_expect and the files init-cluster writes into
# /etc/switchboard (SWITCHBOARD_CONFIG=/etc/switchboard/NODE.toml).
ENV SWITCHBOARD_DATA_DIR=/data \
    SWITCHBOARD_RAFT_BIND=0.0.0.0:7400 \
    SWITCHBOARD_API_BIND=0.0.0.0:7401 \
    SWITCHBOARD_HTTP_BIND=0.0.0.0:7402 \
    SWITCHBOARD_GOSSIP_BIND=0.0.0.0:7403 \
    SWITCHBOARD_ACTOR_BIND=0.0.0.0:7404 \
    SWITCHBOARD_SESSION_BIND=0.0.0.0:7405 \
    SWITCHBOARD_ADMIN_BIND=0.0.0.0:7406

# 7400 Raft, 7401 node gRPC API, 7402 health and metrics (HTTP), 7403 gossip
# (TCP and UDP), 7404 actors, 7405 sessions (WebSocket, TLS), 7406 admin
# console and API (HTTPS; admin.trusted_networks still admits only loopback
# unless widened: SWITCHBOARD_ADMIN_TRUSTED_NETWORKS).
EXPOSE 7400/tcp 7401/tcp 7402/tcp 7403/tcp 7403/udp 7404/tcp 7405/tcp 7406/tcp
VOLUME ["/data"]
USER 65532:65532
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/switchboard", "healthcheck", "--quiet"]
ENTRYPOINT ["/switchboard"]
CMD ["serve"]
