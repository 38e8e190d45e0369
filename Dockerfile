# For people with Docker. Without a daemon, `make image` builds the same image
# offline into dist/log-capturer.tar.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/log-capturer .

FROM gcr.io/distroless/static:nonroot
COPY --from=build /out/log-capturer /log-capturer
USER 65532:65532
ENTRYPOINT ["/log-capturer"]
CMD ["operator"]
