#!/usr/bin/env python3
"""Packs a static Linux binary into an OCI image archive (an OCI image layout in a tar), the
format `ctr image import` and `wharf image import` read. Deterministic: the same binary gives
the same bytes (fixed timestamps and owners), so the image digest only changes with the code.

usage: oci-pack.py BINARY OUT.tar NAME:TAG [--port 8080] [--env K=V ...]
"""
import argparse
import gzip
import hashlib
import io
import json
import os
import tarfile


def add_bytes(archive, name, data, mode=0o644):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    archive.addfile(info, io.BytesIO(data))


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary")
    parser.add_argument("out")
    parser.add_argument("reference")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--env", action="append", default=[])
    args = parser.parse_args()

    name = os.path.basename(args.binary)
    with open(args.binary, "rb") as f:
        binary = f.read()

    # The one layer: the binary at the root of the file system, executable.
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w", format=tarfile.PAX_FORMAT) as layer:
        add_bytes(layer, name, binary, mode=0o755)
    layer_tar = layer_tar.getvalue()
    layer_gz = io.BytesIO()
    with gzip.GzipFile(fileobj=layer_gz, mode="wb", mtime=0) as gz:
        gz.write(layer_tar)
    layer_gz = layer_gz.getvalue()

    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/" + name],
            "Env": ["PATH=/", f"PORT={args.port}"] + args.env,
            "ExposedPorts": {f"{args.port}/tcp": {}},
            "WorkingDir": "/",
        },
        "rootfs": {"type": "layers", "diff_ids": [digest(layer_tar)]},
        "history": [{"created_by": "scripts/oci-pack.py " + name}],
    }, sort_keys=True, separators=(",", ":")).encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer_gz), "size": len(layer_gz)}],
    }, sort_keys=True, separators=(",", ":")).encode()
    repository, _, tag = args.reference.rpartition(":")
    index = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest(manifest), "size": len(manifest),
            "annotations": {
                "io.containerd.image.name": args.reference,
                "org.opencontainers.image.ref.name": tag or "latest",
            },
            "platform": {"architecture": "amd64", "os": "linux"},
        }],
    }, sort_keys=True, separators=(",", ":")).encode()

    tmp = args.out + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as out:
        add_bytes(out, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add_bytes(out, "index.json", index)
        for blob in (config, manifest, layer_gz):
            add_bytes(out, "blobs/sha256/" + hashlib.sha256(blob).hexdigest(), blob)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
