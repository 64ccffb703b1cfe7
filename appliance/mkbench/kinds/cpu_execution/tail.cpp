
}  // namespace MNN
