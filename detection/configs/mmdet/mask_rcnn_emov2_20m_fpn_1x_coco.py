# mask_rcnn with EMOv2-20M, 1x (official: mask_rcnn/mask-rcnn_emo2_20M_fpn_1x_coco.py)
_base_ = ['mmdet::_base_/models/mask-rcnn_r50_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
          './_emov2_1x.py']

model = dict(
    backbone=dict(
        _delete_=True, type='ZooBackbone', model_name='emov2_20m', out_indices=(1, 2, 3, 4),
        frozen_stages=1, norm_eval=True, pretrained=False,  # no ImageNet weights are published for EMOv2-20M
        window_size=10, drop_path_rate=0.1),
    neck=dict(in_channels=[64, 128, 320, 448]),
)
train_dataloader = dict(batch_size=4, num_workers=4)  # per GPU, 4 GPUs
