"""Train the tutorial's model on a QMNIST dataset and save it as ``model.pth``.

    python -u train.py --dataset /in/dataset --save-to /out/model [--epochs 3]

Seeds are fixed to 0; the dataset is split 5:1 into training and validation (QMNIST's 50,000 /
10,000 of 60,000, scaled to the data); mini-batches of 64. The model is saved after every epoch.
"""

import argparse
from pathlib import Path

import torch
from model import MyMnistModel, fix_seeds
from qmnist import load


def batches(images, labels, order, size):
    for start in range(0, len(order), size):
        index = order[start : start + size]
        yield images[index], labels[index]


def train_epoch(model, optimizer, images, labels, order, epoch, batch_size):
    print(f"**TRAINING START** Epoch: #{epoch}")
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    for n, (x, y) in enumerate(batches(images, labels, order, batch_size)):
        optimizer.zero_grad()
        logit = model(x)
        loss = torch.nn.functional.cross_entropy(logit, y)
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
        correct += (logit.argmax(1) == y).sum().item()
        seen += len(y)
        if n % 100 == 0:
            print(f"Epoch: #{epoch}, Batch: #{n} -- Loss: {loss.item()}, Accuracy: {correct / seen}")
    print(f"**TRAINING RESULT** Epoch: #{epoch} -- total Loss: {total_loss}, Accuracy: {correct / seen}")


@torch.no_grad()
def validate(model, images, labels, order, epoch, batch_size):
    print(f"**VALIDATION START** Epoch: #{epoch}")
    model.eval()
    total_loss, correct = 0.0, 0
    for x, y in batches(images, labels, order, batch_size):
        logit = model(x)
        total_loss += torch.nn.functional.cross_entropy(logit, y, reduction="sum").item() / batch_size
        correct += (logit.argmax(1) == y).sum().item()
    print(f"**VALIDATION RESULT** Epoch: #{epoch} -- total Loss: {total_loss}, Accuracy: {correct / len(order)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="folder with images.gz and labels.gz")
    parser.add_argument("--save-to", required=True, help="folder to write model.pth into")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    generator = fix_seeds(0)
    images, labels = load(args.dataset)
    order = torch.randperm(len(labels), generator=generator)
    cut = len(order) * 5 // 6
    training, validation = order[:cut], order[cut:]
    model = MyMnistModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(1, args.epochs + 1):
        shuffled = training[torch.randperm(len(training), generator=generator)]
        train_epoch(model, optimizer, images, labels, shuffled, epoch, args.batch_size)
        validate(model, images, labels, validation, epoch, args.batch_size)
        print(f"**SAVING MODEL** at Epoch: #{epoch}")
        Path(args.save_to).mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), Path(args.save_to) / "model.pth")


if __name__ == "__main__":
    main()
