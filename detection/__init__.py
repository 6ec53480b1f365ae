"""Detection heads on zoo backbones (COCO boxes and masks, MAYOR text detection)."""
