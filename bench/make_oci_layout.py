#!/usr/bin/env python3
"""Writes an OCI image layout with random gzip layers: make_oci_layout.py DIR TAG LAYERS MB_PER_LAYER"""
import gzip, hashlib, io, json, os, sys, tarfile

root, tag, layers, mb = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
blobs = os.path.join(root, "blobs", "sha256")
os.makedirs(blobs, exist_ok=True)

def blob(data):
    h = hashlib.sha256(data).hexdigest()
    with open(os.path.join(blobs, h), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + h, "size": len(data)}

descs, diff_ids = [], []
for i in range(layers):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        data = os.urandom(mb * 1024 * 1024)
        info = tarfile.TarInfo(f"layer{i}.bin"); info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    diff_ids.append("sha256:" + hashlib.sha256(raw.getvalue()).hexdigest())
    d = blob(gzip.compress(raw.getvalue(), compresslevel=1))
    d["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    descs.append(d)
config = blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}}).encode())
config["mediaType"] = "application/vnd.oci.image.config.v1+json"
manifest = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": descs}).encode())
manifest["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
manifest["annotations"] = {"org.opencontainers.image.ref.name": tag}
with open(os.path.join(root, "oci-layout"), "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
with open(os.path.join(root, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [manifest]}, f)
