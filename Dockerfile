# docker-netattach as an image: the static binary and nothing else, so it builds without a
# registry. Build it with scripts/build-image.sh (static cargo build, then `docker build`).
#
#   one-shot:  docker run --rm --cap-add NET_ADMIN --cap-add SYS_ADMIN --pid=host --network=host \
#                -v /var/run/docker.sock:/var/run/docker.sock -v /var/run/netns:/var/run/netns \
#                -v /var/lib/docker-netattach:/var/lib/docker-netattach docker-netattach attach web
#   daemon:    the same flags with -d and no arguments: the default command `watch --listen auto`
#              serves the endpoints on the host's 127.0.0.1:9180 only. `auto` listens on 0.0.0.0:80
#              only in a network namespace of the container's own (lo and veths only: `-p PORT:80`);
#              whenever this may be the host's namespace (--network=host) it keeps to loopback. To
#              expose the endpoints on the host's addresses, ask: `watch --listen 0.0.0.0:9180`
#              (and `--allow-host NAME` for each name clients use; see docs/watch.md).
#   no --pid=host (a Swarm service cannot have it): -v /proc:/host/proc:ro and
#              -e DOCKER_NETATTACH_PROC_ROOT=/host/proc (or --proc-root /host/proc), so that the
#              tool opens the host's /proc/<pid>/ns/net. Add --cap-add SYS_PTRACE for containers
#              that run as another user. Compose, Swarm and systemd files: deploy/, docs/deploy.md.
FROM scratch
COPY target/image/docker-netattach /docker-netattach
ENTRYPOINT ["/docker-netattach"]
CMD ["watch", "--listen", "auto"]
EXPOSE 80
LABEL org.opencontainers.image.title="docker-netattach" \
      org.opencontainers.image.description="Attach --network=none containers to a Docker bridge"
