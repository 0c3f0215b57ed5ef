"""GPU check: a PyTorch trainer reading the published co-occurrence graph.

Reads one day's cooccurrence/dt=D/ folder with no TensorFlow (gzip + the TFRecord
framing + tf.train.Example decoded with protobuf), maps ids through the published
article index, and trains item embeddings on the edges (dot product, sampled
negatives, weighted by the edge weight) on the GPU. Prints read and train rates.

    python benchmarks/gpu_reader_check.py <day_dir> [--epochs 5] [--dim 128]

Standalone on purpose (numpy, torch, protobuf): it is what a trainer's image has.
"""

import argparse
import glob
import gzip
import os
import struct
import time



def example_class():
    """tf.train.Example as a protobuf message class, built from its definition."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    f = descriptor_pb2.FileDescriptorProto(name="example_check.proto", package="tfcheck",
                                           syntax="proto3")
    T = descriptor_pb2.FieldDescriptorProto

    def msg(name, fields, nested=()):
        m = f.message_type.add(name=name)
        for number, (fname, ftype, label, type_name) in enumerate(fields, 1):
            field = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                field.type_name = type_name
            if ftype in (T.TYPE_INT64, T.TYPE_FLOAT) and label == T.LABEL_REPEATED:
                field.options.packed = True
        for n in nested:
            m.nested_type.add().CopyFrom(n)
        return m

    rep, opt = T.LABEL_REPEATED, T.LABEL_OPTIONAL
    msg("BytesList", [("value", T.TYPE_BYTES, rep, None)])
    msg("FloatList", [("value", T.TYPE_FLOAT, rep, None)])
    msg("Int64List", [("value", T.TYPE_INT64, rep, None)])
    feature = msg("Feature", [("bytes_list", T.TYPE_MESSAGE, opt, ".tfcheck.BytesList"),
                              ("float_list", T.TYPE_MESSAGE, opt, ".tfcheck.FloatList"),
                              ("int64_list", T.TYPE_MESSAGE, opt, ".tfcheck.Int64List")])
    for field in feature.field:
        field.oneof_index = 0
    feature.oneof_decl.add(name="kind")
    entry = descriptor_pb2.DescriptorProto(
        name="FeatureEntry", options=descriptor_pb2.MessageOptions(map_entry=True))
    entry.field.add(name="key", number=1, type=T.TYPE_STRING, label=opt)
    entry.field.add(name="value", number=2, type=T.TYPE_MESSAGE, label=opt,
                    type_name=".tfcheck.Feature")
    msg("Features", [("feature", T.TYPE_MESSAGE, rep, ".tfcheck.Features.FeatureEntry")],
        nested=[entry])
    msg("Example", [("features", T.TYPE_MESSAGE, opt, ".tfcheck.Features")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tfcheck.Example"))


def records(path):
    data = gzip.decompress(open(path, "rb").read())
    pos, n = 0, len(data)
    while pos < n:
        (length,) = struct.unpack_from("<Q", data, pos)
        yield data[pos + 12:pos + 12 + length]
        pos += 16 + length


def read_set(day_dir, name, Example):
    rows = []
    for path in sorted(glob.glob(os.path.join(day_dir, f"{name}-*.tfrecord.gz"))):
        for record in records(path):
            ex = Example.FromString(record)
            row = {}
            for key, feat in ex.features.feature.items():
                kind = feat.WhichOneof("kind")
                row[key] = list(getattr(feat, kind).value) if kind else []
            rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("day_dir", help="a published cooccurrence/dt=YYYY-MM-DD folder")
    parser.add_argument("--epochs", type=int, default=5, help="passes over the edges")
    parser.add_argument("--dim", type=int, default=128, help="embedding size")
    parser.add_argument("--batch", type=int, default=65536, help="edges per step")
    args = parser.parse_args()
    import torch

    Example = example_class()
    t0 = time.perf_counter()
    index = {r["article_id"][0]: r["index"][0] for r in read_set(args.day_dir, "index", Example)}
    edges = read_set(args.day_dir, "edges", Example)
    read_s = time.perf_counter() - t0
    n_records = len(index) + len(edges)
    src = torch.tensor([index[e["src_article_id"][0]] for e in edges], dtype=torch.long)
    dst = torch.tensor([index[e["dst_article_id"][0]] for e in edges], dtype=torch.long)
    weight = torch.tensor([e["weight"][0] for e in edges], dtype=torch.float32)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"read {n_records:,} records ({len(edges):,} edges, {len(index):,} index rows) in "
          f"{read_s:.2f} s: {n_records / read_s:,.0f} records/s on the CPU, no TensorFlow")
    src, dst, weight = src.to(device), dst.to(device), weight.to(device)
    weight = weight / weight.mean()
    n_items = max(index.values()) + 1          # 0 is padding
    emb = torch.nn.Embedding(n_items, args.dim, padding_idx=0).to(device)
    ctx = torch.nn.Embedding(n_items, args.dim, padding_idx=0).to(device)
    opt = torch.optim.Adam(list(emb.parameters()) + list(ctx.parameters()), lr=0.01)
    gen = torch.Generator(device=device).manual_seed(0)
    steps, losses = 0, []
    torch.cuda.synchronize() if device.type == "cuda" else None
    t1 = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(src), device=device, generator=gen)
        for lo in range(0, len(src), args.batch):
            i = order[lo:lo + args.batch]
            a, b, w = src[i], dst[i], weight[i]
            neg = torch.randint(1, n_items, (len(i), 5), device=device, generator=gen)
            pos_logit = (emb(a) * ctx(b)).sum(-1)
            neg_logit = torch.bmm(ctx(neg), emb(a).unsqueeze(-1)).squeeze(-1)
            loss = (w * torch.nn.functional.softplus(-pos_logit)).mean() + \
                torch.nn.functional.softplus(neg_logit).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            losses.append(loss.detach())
    torch.cuda.synchronize() if device.type == "cuda" else None
    train_s = time.perf_counter() - t1
    first, last = float(losses[0]), float(losses[-1])
    print(f"trained {args.epochs} epochs ({steps} steps of {args.batch:,} edges) on "
          f"{torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'} in "
          f"{train_s:.2f} s: {args.epochs * len(src) / train_s:,.0f} edges/s; loss "
          f"{first:.4f} -> {last:.4f}")


if __name__ == "__main__":
    main()
